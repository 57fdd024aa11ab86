"""Read a fleet directory into typed models, collecting every problem as a Finding.

Layout:  <root>/fleet.json, <root>/hosts/<name>/host.json, <root>/hosts/<name>/services/<svc>.json
Loading never raises for bad content: a file that does not parse or match its
model becomes a finding (file + JSON pointer) and is left out of the result, so
`validate` can report every problem at once.
"""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mcfleet.fleet.findings import Finding
from mcfleet.fleet.local_paths import fleet_with_local_paths, host_with_local_paths
from mcfleet.fleet.models import Fleet, Host, Service
from mcfleet.fleet.models_providers import PROVIDER_KINDS

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class HostEntry:
    """One host as loaded: its host.json, its services and the files they came from."""

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
    """A fleet folder as loaded: fleet.json, the hosts, and every finding on the way."""

    root: Path
    fleet: Fleet | None
    hosts: dict[str, HostEntry] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def sources(self) -> list[str]:
        """The files services take a file's content from (`source`: relative to the fleet folder, no '..')."""
        return sorted({f.source for e in self.hosts.values() for s in e.services for f in s.files if f.source})

    def rel(self, path: Path) -> str:
        # string prefix, not Path.relative_to: called for every finding and placed service
        text, root = str(path), str(self.root)
        if text.startswith(root + os.sep):
            return text[len(root) + 1 :]
        return text


def _pointer(loc: tuple[int | str, ...]) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in loc) if loc else ""


MAX_FILE_BYTES = 256 * 1024  # a host file is a few KiB; anything this big is a mistake or an attack
MAX_FINDINGS_PER_FILE = 20


def _unreadable(rel: str, what: str, host: str | None = None) -> Finding:
    return Finding("unreadable", rel, "", what, "make it a readable regular file (or folder), or remove it", host)


def _read_text(path: Path, rel: str, host: str | None = None) -> tuple[str | None, list[Finding]]:
    """The file's text, or a finding: never blocks (a FIFO), never reads past MAX_FILE_BYTES (/dev/zero)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return None, [_unreadable(rel, f"cannot read the file: {exc.strerror}", host)]
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, [_unreadable(rel, "not a regular file (a device, FIFO, socket or folder)", host)]
        if info.st_size > MAX_FILE_BYTES:
            return None, [_too_large(rel, host)]
        data = os.read(fd, MAX_FILE_BYTES + 1)  # a regular file returns what it has (st_size may lie: /proc)
        while data and len(data) <= MAX_FILE_BYTES and (more := os.read(fd, MAX_FILE_BYTES + 1 - len(data))):
            data += more
    except OSError as exc:
        return None, [_unreadable(rel, f"cannot read the file: {exc.strerror}", host)]
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        return None, [_too_large(rel, host)]
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError:
        return None, [Finding("json-syntax", rel, "", "the file is not UTF-8 text", "save it as UTF-8 JSON", host)]


def _too_large(rel: str, host: str | None) -> Finding:
    return Finding(
        "file-too-large",
        rel,
        "",
        f"the file is larger than {MAX_FILE_BYTES // 1024} KiB",
        "fleet files are small JSON documents: check that this is the file you meant",
        host,
    )


Twice = dict[int, tuple[dict[str, Any], list[str]]]  # id -> (the object, kept alive so no id is reused; keys)


def _object_pairs_hook(twice: Twice) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """A json object hook that notes, by object id, the keys an object holds twice (plain dicts: it is hot)."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            twice[id(obj)] = obj, sorted(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        return obj

    return hook


def _duplicate_keys(data: Any, twice: Twice, rel: str, host: str | None, at: str = "") -> list[Finding]:
    """A `duplicate-key` finding for each object holding a key twice (JSON parsers keep only the last)."""
    found: list[Finding] = []
    if isinstance(data, dict):
        for key in twice[id(data)][1] if id(data) in twice else []:
            found.append(
                Finding(
                    "duplicate-key",
                    rel,
                    at,
                    f"the key {key!r} appears more than once in this object (only the last would count)",
                    "keep one of them",
                    host,
                )
            )
        for key, value in data.items():
            found += _duplicate_keys(value, twice, rel, host, f"{at}/{_pointer((key,))[1:]}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += _duplicate_keys(value, twice, rel, host, f"{at}/{i}")
    return found[:MAX_FINDINGS_PER_FILE]


def _decode(text: str, rel: str, host: str | None = None) -> tuple[Any, list[Finding]]:
    twice: Twice = {}
    try:
        data = json.loads(text, object_pairs_hook=_object_pairs_hook(twice))
    except RecursionError:
        return None, [Finding("json-syntax", rel, "", "the JSON is nested too deeply", "flatten the file", host)]
    except json.JSONDecodeError as exc:
        return None, [
            Finding(
                "json-syntax",
                rel,
                "",
                f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                "fix the JSON syntax (a trailing comma or a missing quote is the usual cause)",
                host,
            )
        ]
    return data, _duplicate_keys(data, twice, rel, host) if twice else []  # the walk only when a key repeats


def read_json(path: Path, rel: str) -> tuple[Any, list[Finding]]:
    """Parse a JSON file; a syntax error becomes a finding naming the line and column."""
    text, errs = _read_text(path, rel)
    return (None, errs) if text is None else _decode(text, rel)


def read_model(model: type[M], path: Path, rel: str, host: str | None = None) -> tuple[M | None, list[Finding]]:
    """Read and validate a file: decoded with `json` (line and column of a syntax error, duplicate
    keys found), then validated by the model; every problem is a finding."""
    text, errs = _read_text(path, rel, host)
    if text is None:
        return None, errs
    data, errs = _decode(text, rel, host)
    if errs:
        return None, errs
    return parse_model(model, data, rel, host)


def parse_model(model: type[M], data: Any, rel: str, host: str | None = None) -> tuple[M | None, list[Finding]]:
    """Validate data against a model; each pydantic error becomes a `schema` finding."""
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, _schema_findings(exc, rel, host, model)


def _schema_findings(exc: ValidationError, rel: str, host: str | None, model: type[BaseModel]) -> list[Finding]:
    found = []
    errors = exc.errors(include_url=False)
    for err in errors[:MAX_FINDINGS_PER_FILE]:
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in PROVIDER_KINDS))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
            hint = _unknown_field_hint(model, err["loc"])
        elif err["type"] == "missing":
            msg = "required field is missing"
            hint = "add it" + (
                f": {what}" if (what := _what_it_takes(model, err["loc"])) else " (see the example in README.md)"
            )
        else:
            # an enum's message already lists the values it takes
            what = _what_it_takes(model, err["loc"], with_type=err["type"] not in ("enum", "literal_error"))
            hint = f"fix the value: {what}" if what else "fix the value (the schema in schemas/ lists what is allowed)"
        found.append(Finding("schema", rel, _pointer(loc), msg, hint, host))
    if len(errors) > MAX_FINDINGS_PER_FILE:
        more = len(errors) - MAX_FINDINGS_PER_FILE
        found.append(
            Finding("schema", rel, "", f"and {more} more schema errors in this file", "fix the ones above first", host)
        )
    return found


def _what_it_takes(model: type[BaseModel], loc: tuple[int | str, ...], *, with_type: bool = True) -> str | None:
    """'env takes a list of strings (KEY=VALUE)': the field's JSON type and its description."""
    from mcfleet.fleet.field_help import field_help  # only a file with errors needs it

    found = field_help(model, loc)
    if found is None:
        return None
    name, description, json_type = found
    json_type = json_type if with_type else None
    if json_type is None and description is None:
        return None
    text = f"{name} takes {json_type}" if json_type else name
    return f"{text} ({description})" if description else text


def _unknown_field_hint(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    import difflib

    from mcfleet.fleet.field_help import known_fields

    known = known_fields(model, loc[:-1])
    if not known:
        return "remove it, or check its spelling against the schema in schemas/"
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f"did you mean {close[0]!r}? (or remove it)"
    return f"remove it; the fields here are: {', '.join(known)}"


def _list_dir(path: Path, rel: str, host: str | None = None) -> tuple[list[os.DirEntry[str]] | None, list[Finding]]:
    """The entries of a folder sorted by name, or a finding: a folder that cannot be listed is never empty."""
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name), []
    except NotADirectoryError:
        return None, [_unreadable(rel, "expected a folder, found a file", host)]
    except OSError as exc:
        return None, [_unreadable(rel, f"cannot list the folder: {exc.strerror}", host)]


def _is_dir(entry: os.DirEntry[str]) -> bool | None:
    """True/False, or None for a link that leads nowhere (dangling, a loop) or cannot be followed."""
    try:
        return entry.is_dir()  # follows links
    except OSError:
        return None


def _link_finding(rel: str, path: Path, host: str | None = None) -> Finding:
    try:
        path.stat()
    except OSError as exc:
        return _unreadable(rel, f"cannot follow the link: {exc.strerror}", host)
    return _unreadable(rel, "cannot be read", host)


def load_fleet(root: Path) -> LoadedFleet:
    root = root.resolve()
    result = LoadedFleet(root=root, fleet=None)
    fleet_path = root / "fleet.json"
    if not os.path.lexists(fleet_path):
        result.findings.append(
            Finding(
                "missing-file",
                "fleet.json",
                "",
                f"no fleet.json in {root}",
                "run mcfleet in the fleet's folder or below it, pass -C DIR (or set MCFLEET_FLEET), "
                "or create a fleet with `mcfleet init DIR`",
            )
        )
    else:
        result.fleet, errs = read_model(Fleet, fleet_path, "fleet.json")
        result.findings += errs
        if result.fleet is not None:
            result.fleet = fleet_with_local_paths(result.fleet, root)

    hosts_dir = root / "hosts"
    if not os.path.lexists(hosts_dir):
        return result
    entries, errs = _list_dir(hosts_dir, "hosts")
    result.findings += errs
    for item in entries or []:
        if item.name.startswith("."):
            continue  # editor and OS droppings (.DS_Store, .swp) are not hosts
        kind = _is_dir(item)
        rel = f"hosts/{item.name}"
        if kind is None or (item.is_symlink() and not os.path.exists(item.path)):
            result.findings.append(_link_finding(rel, Path(item.path), item.name))
        elif not kind:
            result.findings.append(
                Finding(
                    "unreadable",
                    rel,
                    "",
                    "a file where a host folder belongs (hosts/ holds one folder per host)",
                    f"move it out of hosts/, or make it the folder hosts/{item.name}/ with a host.json",
                    item.name,
                )
            )
        else:
            entry = _load_host(result, Path(item.path))
            if entry is not None:
                result.hosts[entry.host.name] = entry
    return result


def _load_host(result: LoadedFleet, host_dir: Path) -> HostEntry | None:
    host_file = host_dir / "host.json"
    rel = result.rel(host_file)
    if not os.path.lexists(host_file):
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
    host = host_with_local_paths(host, result.root)
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
    entries: list[os.DirEntry[str]] | None = []
    if os.path.lexists(svc_dir):  # no services/ folder: no services; one that cannot be listed: a finding
        entries, errs = _list_dir(svc_dir, result.rel(svc_dir), host.name)
        if errs and svc_dir.is_symlink() and not svc_dir.exists():
            errs = [_link_finding(result.rel(svc_dir), svc_dir, host.name)]
        result.findings += errs
    for item in entries or []:
        if not item.name.endswith(".json") or item.name.startswith("."):
            continue
        svc_file = Path(item.path)
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
