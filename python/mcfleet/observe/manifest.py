"""The applied-state manifest: what mcfleet manages on a node, in root's own store.

The one manifest store: `/var/lib/mcfleet/manifest.json` (root-owned folder, 0700), never
the agent's folder, which the agent's account owns and could rewrite to hide drift.  The
facts script reads it there (as root) and apply writes it there, as its last step,
atomically and only when its content changes.  Each resource kind writes its own part
(`record`); the parts are typed.

It records what the node has (ids read back from the node, the agent hash that answered
its health check), not what the files wanted: the plan compares the files with it, so
what the files no longer declare becomes `delete` actions.  Unknown fields are kept (a
newer mcfleet may add some).  The file crosses a trust boundary (anything on the node can
write it): it is validated strictly (no coercion) against its model before it is used, and
one that fails is checked against the JSON schema made from that model, whose first
complaint names the field; a corrupt one is an error naming the file, never "no manifest".
"""

# Annotations are evaluated when each class is created (no `from __future__ import annotations`):
# from strings, pydantic would compile every field's annotation again to build the model.

import json
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mcfleet.errors import McfleetError
from mcfleet.util.empty import empty_list

NODE_STORE = "/var/lib/mcfleet"  # root's folder on every node: the agent's account cannot write it
MANIFEST_NAME = "manifest.json"
# `stat key  sha256` of the agent binary as root last installed it: the facts read hashes the binary
# (tens of MB) only when its stat key differs
AGENT_RECORD = f"{NODE_STORE}/agent/installed"
MANIFEST_PATH = f"{NODE_STORE}/{MANIFEST_NAME}"
MANIFEST_VERSION = 1
VOLATILE = frozenset({"applied_at", "applied_by"})  # change on every write; not a change of content


def manifest_path(store: str = NODE_STORE) -> str:
    """Where a node's manifest is: in root's store, whatever the host file says (plan and apply
    both ask here; `store` differs only for a local node a test points at a scratch folder)."""
    return f"{store}/{MANIFEST_NAME}"


class ManifestCorrupt(McfleetError):
    kind = "corrupt manifest"


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow", defer_build=True)  # as models_base.FROZEN


class ManifestAgent(_Part):
    path: str = "/srv/mcp/mcp-agent"
    sha256: str
    version: str | None = None
    unit: str | None = None
    user: str | None = None
    unit_sha256: str | None = Field(default=None, description="sha256 of the unit file as installed")


class ManifestUser(_Part):
    uid: int
    gid: int


class ManifestService(_Part):
    hash: str = Field(description="spec_hash() of the service as applied")
    stage: str = "services"
    containers: list[str] = Field(default_factory=empty_list)
    images: dict[str, str] = Field(default_factory=dict, description="container -> image as applied")
    ports: dict[str, int] = Field(default_factory=dict, description="route key -> assigned host port")


# A record's value or a route's backend whose change got no answer (a timeout, a dropped connection):
# what it holds is not known, so the next plan sends it again (or removes it once undeclared).
NO_ANSWER = "?"


class ManifestRecord(_Part):
    name: str
    type: str = "A"
    value: str


class ManifestRoute(_Part):
    hostname: str
    listener: int = 443
    mode: str
    service: str | None = None
    backend: str | None = Field(default=None, description="address:port the route points at")


class ManifestCert(_Part):
    name: str
    path: str
    sans: list[str] = Field(default_factory=empty_list)
    issuer: str | None = Field(default=None, description="the cert provider that issued it (None: not recorded)")


class ManifestFile(_Part):
    service: str
    sha256: str  # of the content; "secret NAME" for a secret
    owner: str = Field(description="uid:gid as written")
    mode: str
    # A secret's file: what it was written from, so that a plan made without an identity to decrypt it
    # can still tell that nothing changed (the same encrypted file, and the node's file as written).
    # `written` (the content's sha256) stays in this root-only file: a plan never shows it.
    sealed: str | None = Field(default=None, description="a secret: sha256 of secrets/NAME.age it was written from")
    written: str | None = Field(default=None, description="a secret: sha256 of the content written")


class Manifest(_Part):
    version: int = MANIFEST_VERSION
    applied_at: str | None = None
    applied_by: str | None = None
    agent: ManifestAgent | None = None
    users: dict[str, ManifestUser] = Field(default_factory=dict)
    services: dict[str, ManifestService] = Field(default_factory=dict)
    dns: list[ManifestRecord] = Field(default_factory=empty_list)
    routes: list[ManifestRoute] = Field(default_factory=empty_list)
    certs: list[ManifestCert] = Field(default_factory=empty_list)
    files: dict[str, ManifestFile] = Field(default_factory=dict, description="path -> the file as written")

    def content(self) -> dict[str, Any]:
        """The manifest without its write stamp: two manifests with equal content are the same."""
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in VOLATILE}

    def to_text(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_none=False), indent=2, sort_keys=True) + "\n"


@cache
def _validator() -> Any:
    import jsonschema  # ~40 ms of imports: paid only for a manifest the model rejects

    schema = Manifest.model_json_schema()
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def parse_manifest(text: str, *, where: str) -> Manifest | None:
    """The manifest in `text` (None when the file is absent or empty); ManifestCorrupt otherwise."""
    if not text.strip():
        return None
    hint = f"move {where} aside and re-apply (mcfleet then records the node again), or restore it from a backup"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestCorrupt(f"unreadable manifest: {exc}", location=where, hint=hint) from exc
    try:  # strict: no coercion, so what passes here also matches the schema (which is made from the model)
        return Manifest.model_validate(data, strict=True)
    except ValidationError:
        pass  # the schema check below names the first problem the way the schema spells it
    import jsonschema

    first = jsonschema.exceptions.best_match(_validator().iter_errors(data))
    if first is not None:
        at = "/".join(str(p) for p in first.absolute_path) or "(top)"
        raise ManifestCorrupt(
            f"the manifest does not match its schema at {at}: {first.message}", location=where, hint=hint
        )
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:  # the schema and the model agree; this is a belt for the braces
        raise ManifestCorrupt(
            f"the manifest is invalid: {str(exc).splitlines()[0]}", location=where, hint=hint
        ) from exc
