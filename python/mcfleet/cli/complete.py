"""Shell completion of host, role/tag and service names, read from the fleet's files.

Completion runs without the global options taking effect, so the fleet is $MCFLEET_FLEET or
the nearest fleet.json upward; a broken or missing fleet completes nothing (never an error).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _loaded() -> Any:
    from mcfleet.cli.fleetdir import ENV_VAR, find_fleet
    from mcfleet.fleet.load import load_fleet

    env = os.environ.get(ENV_VAR)
    root = Path(env) if env else find_fleet(Path.cwd())
    return load_fleet(root) if root is not None else None


def complete_host(incomplete: str) -> list[str]:
    try:
        loaded = _loaded()
    except Exception:  # completion must never break the shell
        return []
    return sorted(n for n in (loaded.hosts if loaded else {}) if n.startswith(incomplete))


def complete_selector(incomplete: str) -> list[str]:
    """Host names, and @role/@tag; after a comma, completes the last term of the list."""
    try:
        loaded = _loaded()
    except Exception:
        return []
    if loaded is None:
        return []
    head, _, term = incomplete.rpartition(",")
    prefix = f"{head}," if head else ""
    negate = "!" if term.startswith("!") else ""
    term = term.removeprefix("!")
    labels = {str(r) for e in loaded.hosts.values() for r in e.host.roles} | {
        t for e in loaded.hosts.values() for t in e.host.tags
    }
    words = sorted(loaded.hosts) + sorted(f"@{label}" for label in labels)
    return [f"{prefix}{negate}{w}" for w in words if w.startswith(term)]


def complete_service(ctx: Any, incomplete: str) -> list[str]:
    """`agent` and the services placed on the host named earlier on the line."""
    try:
        loaded = _loaded()
    except Exception:
        return []
    host = (ctx.params or {}).get("host") if ctx is not None else None
    names = {"agent"} | (_services_of(loaded, host) if loaded is not None else set())
    return sorted(n for n in names if n.startswith(incomplete))


def _services_of(loaded: Any, host: str | None) -> set[str]:
    entries = [loaded.hosts[host]] if host in loaded.hosts else list(loaded.hosts.values())
    return {s.name for e in entries for s in e.services}


def complete_placed_service(ctx: Any, incomplete: str) -> list[str]:
    """The services placed on the host named earlier on the line (every placed one before it)."""
    try:
        loaded = _loaded()
        if loaded is None:
            return []
        host = (ctx.params or {}).get("host") if ctx is not None else None
        return sorted(n for n in _services_of(loaded, host) if n.startswith(incomplete))
    except Exception:
        return []


def complete_host_or_service(ctx: Any, incomplete: str) -> list[str]:
    """`render`'s words: a host or a service first; after a host, that host's services."""
    try:
        loaded = _loaded()
        if loaded is None:
            return []
        earlier = [w for w in (ctx.params or {}).get("names") or [] if w] if ctx is not None else []
        if earlier and earlier[0] in loaded.hosts:
            words = _services_of(loaded, earlier[0]) if len(earlier) == 1 else set()
        else:
            words = set() if earlier else set(loaded.hosts) | _services_of(loaded, None)
        return sorted(w for w in words if w.startswith(incomplete))
    except Exception:
        return []


def complete_secret(incomplete: str) -> list[str]:
    """The fleet's secrets: the names of secrets/*.age."""
    try:
        loaded = _loaded()
        folder = loaded.root / "secrets" if loaded is not None else None
        if folder is None or not folder.is_dir():
            return []
        names = (p.name.removesuffix(".age") for p in folder.iterdir() if p.name.endswith(".age"))
        return sorted(n for n in names if n.startswith(incomplete))
    except Exception:
        return []


def complete_gone_host(incomplete: str) -> list[str]:
    """The hosts noted in .mcfleet/hosts-seen.json that have no folder under hosts/ (what `mcfleet forget`
    takes); read as it is: completion never sets a corrupt file aside."""
    import json

    from mcfleet.plan.gone import seen_path

    try:
        loaded = _loaded()
        if loaded is None or not seen_path(loaded.root).is_file():
            return []
        noted = json.loads(seen_path(loaded.root).read_text()).get("hosts", {})
        return sorted(h for h in noted if h not in loaded.hosts and h.startswith(incomplete))
    except Exception:
        return []
