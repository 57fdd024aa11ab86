"""Host selection: the `--on` syntax shared by every command that targets hosts.

A selector is a comma-separated list of terms, matched against the loaded fleet:

    rift            a host name (must exist: a typo is an error with "did you mean ...")
    'orion*'        a glob over host names (fnmatch: * ? [...])
    @edge           every host with that role or that tag
    !svc, !@edge    remove what the term matches from the selection so far

A missing selector means every host; an empty one (`--on ""`, e.g. an unset variable) is an
error, never the whole fleet.  The result keeps the fleet's
order (hosts sorted by name) and names each host once.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

from mcfleet.errors import SelectionError
from mcfleet.fleet.load import HostEntry, LoadedFleet

_GLOB_CHARS = set("*?[")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    import difflib  # only for an unknown name (the suggestion)

    close = difflib.get_close_matches(word, sorted(set(choices)), n=3, cutoff=0.5)
    return f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _labels(entry: HostEntry) -> set[str]:
    return {str(r) for r in entry.host.roles} | set(entry.host.tags)


def broken_hosts(loaded: LoadedFleet) -> dict[str, str]:
    """Host folders whose host.json did not load (name -> that file): left out of `loaded.hosts`."""
    out: dict[str, str] = {}
    for f in loaded.findings:
        parts = f.file.split("/")
        if len(parts) == 3 and parts[0] == "hosts" and parts[2] == "host.json" and parts[1] not in loaded.hosts:
            out[parts[1]] = f.file
    return out


def left_out(name: str, file: str, where: str, *, selector: bool = True) -> SelectionError:
    """A host named (or matched) whose host.json does not load: said as such, not as a host that does not exist."""
    other = f", or leave the host out of the selection (`!{name}`)" if selector else ""
    return SelectionError(
        f"host {name!r} is left out: {file} has problems",
        location=where,
        hint=f"`mcfleet validate` names them; fix {file}{other}",
    )


def _match(term: str, hosts: dict[str, HostEntry], broken: dict[str, str] | None = None) -> list[str]:
    """Names matched by one term (without its `!`); raises when it matches nothing, or when it names or
    matches a host in `broken` (its host.json did not load: a selection never drops it silently)."""
    broken = broken or {}
    if term.startswith("@"):
        label = term[1:]
        found = [n for n, e in hosts.items() if label in _labels(e)]
        if not found:
            known = {lab for e in hosts.values() for lab in _labels(e)}
            hint = did_you_mean(label, known) or f"known roles and tags: {', '.join(sorted(known)) or 'none'}"
            raise SelectionError(f"no host has the role or tag {label!r}", location=f"--on {term}", hint=hint)
        return found
    if _GLOB_CHARS & set(term):
        found = [n for n in hosts if fnmatch.fnmatchcase(n, term)]
        if lost := sorted(n for n in broken if fnmatch.fnmatchcase(n, term)):
            raise left_out(lost[0], broken[lost[0]], f"--on {term}")
        if not found:
            raise SelectionError(
                f"the pattern {term!r} matches no host",
                location=f"--on {term}",
                hint=f"hosts: {', '.join(sorted(hosts)) or 'none'}",
            )
        return found
    if term not in hosts and term in broken:
        raise left_out(term, broken[term], f"--on {term}")
    if term not in hosts:
        hint = did_you_mean(term, hosts) or f"hosts: {', '.join(sorted(hosts)) or 'none'} (see `mcfleet hosts`)"
        raise SelectionError(f"no host named {term!r}", location=f"--on {term}", hint=hint)
    return [term]


def select_hosts(loaded: LoadedFleet, selector: str | Sequence[str] | None) -> list[HostEntry]:
    """The hosts a selector names, in fleet order.  Raises SelectionError for names that do not exist."""
    hosts = loaded.hosts
    raw = [selector] if isinstance(selector, str) else list(selector or [])
    terms = [t.strip() for part in raw for t in part.split(",") if t.strip()]
    if raw and not terms:  # `--on "$HOSTS"` with the variable empty: never read as the whole fleet
        raise SelectionError(
            "the selector is empty",
            location="--on " + ",".join(repr(r) for r in raw),
            hint="name hosts (`mcfleet hosts` lists them), or leave --on out for every host "
            "(apply then asks, or takes --all)",
        )
    if not terms:
        return [hosts[n] for n in sorted(hosts)]
    chosen: set[str] = set()
    # A selector made only of exclusions starts from the whole fleet ("!svc" = all but svc).
    if all(t.startswith("!") for t in terms):
        chosen = set(hosts)
    broken = broken_hosts(loaded)
    for term in terms:
        if term.startswith("!"):
            if term[1:] in broken:  # leaving out a host that does not load: it is out already
                continue
            chosen -= set(_match(term[1:], hosts))
        else:
            chosen |= set(_match(term, hosts, {n: f for n, f in broken.items() if f"!{n}" not in terms}))
    if not chosen:
        raise SelectionError(
            "the selection is empty", location=f"--on {','.join(terms)}", hint="drop an exclusion (`!…`) term"
        )
    return [hosts[n] for n in sorted(chosen)]
