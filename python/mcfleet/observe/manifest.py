"""The applied-state manifest, `/srv/mcp/mcfleet-state.json` on every node (SPEC §5).

`apply` writes it atomically as its last step; `plan` reads it to know what
mcfleet manages on the node, so that what the files no longer declare becomes
`delete` actions, and drift (a hash on the node that differs from the one
recorded) becomes `update` actions.  Unknown fields are kept (a newer mcfleet
may add some) so reading never loses data.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_PATH = "/srv/mcp/mcfleet-state.json"
MANIFEST_VERSION = 1


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")


class ManifestAgent(_Part):
    path: str = "/srv/mcp/mcp-agent"
    sha256: str
    version: str | None = None


class ManifestUser(_Part):
    uid: int
    gid: int


class ManifestService(_Part):
    hash: str = Field(description="spec_hash() of the service as applied")
    stage: str = "services"
    containers: list[str] = Field(default_factory=list)
    ports: dict[str, int] = Field(default_factory=dict, description="route name -> assigned host port")


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
    sans: list[str] = Field(default_factory=list)


class Manifest(_Part):
    version: int = MANIFEST_VERSION
    applied_at: str | None = None
    applied_by: str | None = None
    agent: ManifestAgent | None = None
    users: dict[str, ManifestUser] = Field(default_factory=dict)
    services: dict[str, ManifestService] = Field(default_factory=dict)
    dns: list[ManifestRecord] = Field(default_factory=list)
    routes: list[ManifestRoute] = Field(default_factory=list)
    certs: list[ManifestCert] = Field(default_factory=list)
