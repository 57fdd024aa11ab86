"""Route facts from the route provider: which hostnames the proxy actually serves.

Only presence is observed (a hostname has a route or not): how a route's backend is
spelled is the route provider's business, so backends are compared through the
manifest.  Caddy (admin API, L7) is read here; other backends report nothing (None)
and the plan falls back to the manifest alone.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

TIMEOUT_S = 3.0


def caddy_hostnames(admin_url: str, server: str) -> set[str]:
    """Every host matcher of the server's routes (blocking; raises OSError/ValueError)."""
    import urllib.request  # here: a fleet without a Caddy route provider never pays for http.client

    url = f"{admin_url.rstrip('/')}/config/apps/http/servers/{server}/routes"
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
        routes: Any = json.loads(resp.read() or b"null")
    return set(hostnames_of(routes))


def hostnames_of(routes: Any) -> list[str]:
    """Pure: the host matchers in a caddy route list (nested `subroute` handlers included)."""
    found: list[str] = []
    for route in routes if isinstance(routes, list) else []:
        if not isinstance(route, dict):
            continue
        for match in route.get("match") or []:
            if isinstance(match, dict):
                found += [h for h in match.get("host") or [] if isinstance(h, str)]
        for handler in route.get("handle") or []:
            if isinstance(handler, dict) and handler.get("handler") == "subroute":
                found += hostnames_of(handler.get("routes"))
    return found


async def observed_hostnames(admin_url: str, server: str) -> tuple[set[str] | None, str | None]:
    """(hostnames, None) or (None, error text): a proxy that does not answer is a fact, not a crash."""
    try:
        return await asyncio.to_thread(caddy_hostnames, admin_url, server), None
    except (OSError, ValueError) as exc:
        return None, f"caddy admin API at {admin_url}: {exc}"
