"""Read a fleet directory into typed models, collecting every problem as a Finding.

Layout:  <root>/fleet.json, <root>/hosts/<name>/host.json, <root>/hosts/<name>/services/<svc>.json
Loading never raises for bad content: a file that does not parse or match its
model becomes a finding (file + JSON pointer) and is left out of the result, so
`validate` can report every problem at once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mcfleet.fleet.findings import Finding
from mcfleet.fleet.models import Fleet, Host, Service

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class HostEntry:
    host: Host
    services: tuple[Service, ...]
    dir: Path
    # the file each service was read from, parallel to `services`
    service_paths: tuple[Path, ...] = ()

    def service_path(self, index: int) -> Path:
        if index < len(self.service_paths):
            return self.service_paths[index]
        return self.dir / "services" / f"{self.services[index].name}.json"


@dataclass
class LoadedFleet:
    root: Path
    fleet: Fleet | None
    hosts: dict[str, HostEntry] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def rel(self, path: Path) -> str:
        # string prefix, not Path.relative_to: called for every finding and placed service
        text, root = str(path), str(self.root)
        if text.startswith(root + os.sep):
            return text[len(root) + 1 :]
        return text


def _pointer(loc: tuple[int | str, ...]) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in loc) if loc else ""


def _read_text(path: Path, rel: str) -> tuple[str | None, list[Finding]]:
    try:
        return path.read_text(encoding="utf-8"), []
    except OSError as exc:
        return None, [
            Finding(
                "missing-file", rel, "", f"cannot read the file: {exc.strerror}", "create it or fix its permissions"
            )
        ]
    except UnicodeDecodeError:
        return None, [Finding("json-syntax", rel, "", "the file is not UTF-8 text", "save it as UTF-8 JSON")]


def _decode(text: str, rel: str) -> tuple[Any, list[Finding]]:
    try:
        return json.loads(text), []
    except RecursionError:
        return None, [Finding("json-syntax", rel, "", "the JSON is nested too deeply", "flatten the file")]
    except json.JSONDecodeError as exc:
        return None, [
            Finding(
                "json-syntax",
                rel,
                "",
                f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                "fix the JSON syntax (a trailing comma or a missing quote is the usual cause)",
            )
        ]


def read_json(path: Path, rel: str) -> tuple[Any, list[Finding]]:
    """Parse a JSON file; a syntax error becomes a finding naming the line and column."""
    text, errs = _read_text(path, rel)
    return (None, errs) if text is None else _decode(text, rel)


def read_model(model: type[M], path: Path, rel: str, host: str | None = None) -> tuple[M | None, list[Finding]]:
    """Read and validate a file in one step (pydantic parses the JSON itself: the fast path).

    Only when the text is not valid JSON for pydantic is it decoded again with `json`,
    whose error names the line and column (and which, unlike pydantic, accepts NaN, so
    such a value is then reported by the schema check with its pointer).
    """
    text, errs = _read_text(path, rel)
    if text is None:
        return None, errs
    try:
        return model.model_validate_json(text), []
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors(include_url=False)):
            data, errs = _decode(text, rel)
            return (None, errs) if errs else parse_model(model, data, rel, host)
        return None, _schema_findings(exc, rel, host)


def parse_model(model: type[M], data: Any, rel: str, host: str | None = None) -> tuple[M | None, list[Finding]]:
    """Validate data against a model; each pydantic error becomes a `schema` finding."""
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, _schema_findings(exc, rel, host)


def _schema_findings(exc: ValidationError, rel: str, host: str | None) -> list[Finding]:
    found = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
            hint = "remove it, or check its spelling against the schema in schemas/"
        elif err["type"] == "missing":
            msg = "required field is missing"
            hint = "add it (see the example in README.md)"
        else:
            hint = "fix the value (the schema in schemas/ lists what is allowed)"
        found.append(Finding("schema", rel, _pointer(loc), msg, hint, host))
    return found


# pydantic puts union member tags in error locations; they are not JSON pointer parts.
_UNION_TAGS = {"rfc2136", "mcns", "acme", "metacrypt", "caddy", "haproxy", "mc-proxy"}


def load_fleet(root: Path) -> LoadedFleet:
    root = root.resolve()
    result = LoadedFleet(root=root, fleet=None)
    fleet_path = root / "fleet.json"
    if not fleet_path.exists():
        result.findings.append(
            Finding(
                "missing-file",
                "fleet.json",
                "",
                f"no fleet.json in {root}",
                "run mcfleet in the fleet's root folder, or pass the folder as an argument",
            )
        )
    else:
        result.fleet, errs = read_model(Fleet, fleet_path, "fleet.json")
        result.findings += errs

    hosts_dir = root / "hosts"
    for host_dir in sorted(p for p in hosts_dir.iterdir() if p.is_dir()) if hosts_dir.is_dir() else []:
        entry = _load_host(result, host_dir)
        if entry is not None:
            result.hosts[entry.host.name] = entry
    return result


def _load_host(result: LoadedFleet, host_dir: Path) -> HostEntry | None:
    host_file = host_dir / "host.json"
    rel = result.rel(host_file)
    if not host_file.exists():
        result.findings.append(
            Finding(
                "missing-file",
                rel,
                "",
                f"folder hosts/{host_dir.name} has no host.json",
                "add host.json or remove the folder",
                host_dir.name,
            )
        )
        return None
    host, errs = read_model(Host, host_file, rel, host_dir.name)
    result.findings += errs
    if host is None:
        return None
    if host.name != host_dir.name:
        result.findings.append(
            Finding(
                "name-mismatch",
                rel,
                "/name",
                f"name is {host.name!r} but the folder is {host_dir.name!r}",
                "make `name` equal to the folder name",
                host_dir.name,
            )
        )
    services = []
    paths = []
    svc_dir = host_dir / "services"
    for svc_file in sorted(svc_dir.glob("*.json")) if svc_dir.is_dir() else []:
        srel = result.rel(svc_file)
        svc, errs = read_model(Service, svc_file, srel, host.name)
        result.findings += errs
        if svc is None:
            continue
        if svc.name != svc_file.stem:
            result.findings.append(
                Finding(
                    "name-mismatch",
                    srel,
                    "/name",
                    f"name is {svc.name!r} but the file is {svc_file.name!r}",
                    f"rename the file to {svc.name}.json or fix `name`",
                    host.name,
                )
            )
        services.append(svc)
        paths.append(svc_file)
    return HostEntry(host=host, services=tuple(services), dir=host_dir, service_paths=tuple(paths))
