"""Rules about the files a service takes a file's content from (`source`).  Python-only: they read those
files, which the pure-Nix validator does not see (it evaluates the JSON files only).

- source-unreadable: a service file's `files[i].source` cannot be read as the plan will read it: it is
  missing or not a readable file, larger than the cap on a declared file, or not UTF-8 text while the
  file is a template -> the service file's /files/<i>/source.  Found by `validate` rather than by the
  first plan that renders the service.
- template-unknown: a template source uses a `{{ name }}` mcfleet does not fill for this service (host,
  address, service, zone, hostname, port.<component>/<route name or index>) -> /files/<i>/source.
"""

from __future__ import annotations

from collections.abc import Iterator

from mcfleet.fleet.derive import route_port_key
from mcfleet.fleet.findings import Finding
from mcfleet.fleet.load import LoadedFleet
from mcfleet.fleet.models import Fleet, Service, ServiceFile

# What fleet/files.py template_values fills for every service; with port.<key> for each of its routes.
TEMPLATE_NAMES = ("address", "host", "hostname", "service", "zone")


def read_source(loaded: LoadedFleet, want: ServiceFile) -> tuple[bytes | None, str | None]:
    """(the source's content, None), or (None, why the plan could not use it)."""
    from mcfleet.fleet.files import SOURCE_CAP  # here: a fleet whose services declare no files never needs it
    from mcfleet.fleet.source_file import SourceUnusable, read_source_file

    assert want.source is not None
    try:
        raw = read_source_file(loaded.root, want.source, SOURCE_CAP)
    except SourceUnusable as exc:
        return None, exc.reason
    if want.template:
        try:
            raw.decode()
        except UnicodeDecodeError:
            return None, f"{want.source} is not UTF-8 text, so it cannot be a template"
    return raw, None


def template_names(svc: Service) -> list[str]:
    ports = [f"port.{route_port_key(c, j)}" for c in svc.components for j in range(len(c.routes))]
    return sorted([*TEMPLATE_NAMES, *ports])


def _closest(unknown: list[str], known: list[str]) -> str:
    """ "did you mean {{ address }}?" for the names that are a typo away from a known one."""
    import difflib  # only for a template with an unknown name

    close = [c for u in unknown for c in difflib.get_close_matches(u, known, n=1, cutoff=0.75)]
    return f"did you mean {', '.join(f'{{{{ {c} }}}}' for c in close)}?" if close else ""


def _template_finding(svc: Service, want: ServiceFile, text: str) -> tuple[str, str] | None:
    """(message, hint) when the template uses a name mcfleet does not fill for `svc`."""
    from mcfleet.fleet.files import PLACEHOLDER

    known = template_names(svc)
    unknown = sorted({m.group(1) for m in PLACEHOLDER.finditer(text)} - set(known))
    if not unknown:
        return None
    listed = ", ".join(f"{{{{ {u} }}}}" for u in unknown)
    close = _closest(unknown, known)
    return (
        f"{svc.name}'s template {want.source} uses {listed}, which mcfleet does not fill",
        (f"{close} " if close else "") + f"(it fills: {', '.join(known)})",
    )


def rule_source_files(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    """source-unreadable and template-unknown: each source is read once."""
    for name in sorted(loaded.hosts):
        entry = loaded.hosts[name]
        for index, svc in enumerate(entry.services):
            where = loaded.rel(entry.service_path(index))
            for i, want in enumerate(svc.files):
                if want.source is None:
                    continue
                raw, problem = read_source(loaded, want)
                if problem:
                    hint = "add the file to the fleet folder (the path is relative to it), or fix `source`"
                    yield Finding("source-unreadable", where, f"/files/{i}/source",
                                  f"{svc.name}'s file {want.path}: {problem}", hint, name)  # fmt: skip
                elif want.template and raw is not None and (found := _template_finding(svc, want, raw.decode())):
                    yield Finding("template-unknown", where, f"/files/{i}/source", *found, name)


RULES = [rule_source_files]
