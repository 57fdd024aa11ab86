"""Caddy's admin API: l7 and re-encrypt routes, TLS ended with the certificate mcfleet issued.

The admin API is an HTTP URL, or `unix:<path>` for a socket on the proxy node (reached
through the node's SSH connection).

Each listener port is one Caddy server: `<server>-<listener>` (e.g. `edge-8443`); a fleet
whose Caddy has only `<server>` uses it for listener 443.  A route on another listener with
no server for it is refused (naming the server to add), never put on the wrong port.
Each route is one entry of its server's routes with `@id` `mcfleet-<listener>-<hostname>`
(dots kept) matching the hostname, and one `tls.certificates.load_files` entry tagged with
the same id.  Re-encrypt dials the backend over TLS.

Caddy tries a server's routes in order, and a route of the operator's own that takes every
request for the name (no matcher, a catch-all 404, a `*.zone` proxy) ends it there: so
mcfleet's route is inserted first in the list, and a route of mcfleet's found behind such a
route is reported (`shadowed_by`), which the plan shows as drift.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Iterable
from typing import Any

from mcfleet.fleet.models import CaddyProvider
from mcfleet.providers.base import ProviderError
from mcfleet.providers.http import HTTP_TIMEOUT, http_json, unix_http_json
from mcfleet.providers.route.base import ProxyRoute

WHAT = "Caddy"
PREFIX = "mcfleet-"


def _dict(value: Any) -> dict[str, Any]:
    """A JSON object of Caddy's config, or {} where it has none (absent, null, or not an object)."""
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON list of Caddy's config ([] where it has none)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def route_id(listener: int, hostname: str) -> str:
    return f"{PREFIX}{listener}-{hostname}"


def parse_id(value: str) -> tuple[int, str] | None:
    if not value.startswith(PREFIX):
        return None
    listener, _, hostname = value[len(PREFIX) :].partition("-")
    return (int(listener), hostname) if listener.isdecimal() and hostname else None


UNIX = "unix:"
DEFAULT_LISTENER = 443


class CaddyRoutes:
    """`local_socket`: a local path reaching the node's admin socket when `admin_url` is `unix:<path>`."""

    def __init__(self, provider: CaddyProvider, local_socket: str | None = None) -> None:
        self.provider = provider
        self.base = provider.admin_url.rstrip("/")
        self.local_socket = local_socket or (self.base[len(UNIX) :] if self.base.startswith(UNIX) else None)
        self.servers_read: list[str] | None = None
        self.timeout = HTTP_TIMEOUT  # per call

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        if self.local_socket is not None:
            where = self.base[len(UNIX) :] if self.base.startswith(UNIX) else self.base
            return unix_http_json(self.local_socket, method, path, what=WHAT, where=where, body=body,
                                  timeout=self.timeout)[1]  # fmt: skip
        return http_json(method, self.base + path, what=WHAT, body=body, timeout=self.timeout)[1]

    def _apps(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Caddy's servers (name -> server) and its certificate entries, from one request.  Through a login
        that is not root each connection to the admin socket is a relay process started on the node with
        sudo/doas, so a read asks once (it was one request per server, and one for the certificates)."""
        apps = _dict(self._call("GET", "/config/apps"))  # null: a Caddy with no config yet
        files = _dict(_dict(apps.get("tls")).get("certificates")).get("load_files")
        return _dict(_dict(apps.get("http")).get("servers")), _dicts(files)

    def _servers(self) -> list[str]:
        return sorted(self._apps()[0])

    def _server_for(self, listener: int, servers: list[str]) -> str:
        own = f"{self.provider.server}-{listener}"
        if own in servers:
            return own
        if listener == DEFAULT_LISTENER and self.provider.server in servers:
            return self.provider.server
        raise ProviderError(
            f"Caddy has no server for listener {listener} (looked for {own!r}; it has {', '.join(servers) or 'none'})",
            hint=f"add a server {own!r} listening on port {listener} to Caddy's config, or use another listener",
        )

    def _routes_path(self, server: str) -> str:
        return f"/config/apps/http/servers/{urllib.parse.quote(server)}/routes"

    def _list(self) -> dict[str, ProxyRoute]:
        servers, files = self._apps()
        certs = {tag: c for c in files for tag in c.get("tags", []) if isinstance(tag, str)}
        out: dict[str, ProxyRoute] = {}
        self.servers_read = sorted(servers)  # missing_servers asks the same list after a read
        for server in self.servers_read:
            out.update(self._server_routes(server, _dicts(_dict(servers[server]).get("routes")), certs))
        return out

    def _server_routes(
        self, server: str, routes: list[dict[str, Any]], certs: dict[str, dict[str, Any]]
    ) -> dict[str, ProxyRoute]:
        out: dict[str, ProxyRoute] = {}
        for index, r in enumerate(routes):
            ident = parse_id(str(r.get("@id", "")))
            if ident is None:
                continue
            handler = (r.get("handle") or [{}])[0]
            upstreams = handler.get("upstreams") or [{}]
            tls = (handler.get("transport") or {}).get("tls")
            cert = certs.get(r["@id"], {})
            route = ProxyRoute(
                ident[0],
                ident[1],
                str(upstreams[0].get("dial", "")),
                "re-encrypt" if tls is not None else "l7",
                str(cert.get("certificate", "")),
                str(cert.get("key", "")),
                shadowed_by(server, routes[:index], ident[1]),
            )
            out[route.key_id] = route
        return out

    def _remove(self, listener: int, hostname: str) -> None:
        # The certificate entry goes first: every change makes Caddy load the whole config
        # again, which fails while an entry names a file that is gone.
        ident = route_id(listener, hostname)
        servers, certs = self._apps()
        for index, cert in reversed(list(enumerate(certs))):
            if ident in cert.get("tags", []):
                self._call("DELETE", f"/config/apps/tls/certificates/load_files/{index}")
        if ident in {str(r.get("@id")) for server in servers.values() for r in _dicts(_dict(server).get("routes"))}:
            self._call("DELETE", f"/id/{urllib.parse.quote(ident)}")

    def _add(self, route: ProxyRoute) -> None:
        if route.mode not in ("l7", "re-encrypt"):
            raise ProviderError(
                f"Caddy cannot carry the {route.mode} route {route.hostname} (it ends TLS)",
                hint="configure providers.route_l4 (haproxy or mc-proxy) for l4 routes",
            )
        ident = route_id(route.listener, route.hostname)
        server = self._server_for(route.listener, self._servers())
        self._remove(route.listener, route.hostname)  # replace: a changed cert file is read again
        if route.cert:
            entry = {"certificate": route.cert, "key": route.key, "tags": [ident]}
            self._call("POST", "/config/apps/tls/certificates/load_files/...", [entry])
        handler: dict[str, Any] = {"handler": "reverse_proxy", "upstreams": [{"dial": route.backend}]}
        if route.mode == "re-encrypt":
            handler["transport"] = {"protocol": "http", "tls": {}}
        body = {"@id": ident, "match": [{"host": [route.hostname]}], "handle": [handler], "terminal": True}
        if self._call("GET", self._routes_path(server)):  # first in the list: PUT at an index inserts there
            self._call("PUT", self._routes_path(server) + "/0", body)
        else:  # no route yet (the list may be absent: a plain POST would set it to one object, not a list)
            self._call("POST", self._routes_path(server) + "/...", [body])

    async def list_routes(self) -> dict[str, ProxyRoute]:
        return await asyncio.to_thread(self._list)

    async def add_route(self, route: ProxyRoute) -> None:
        await asyncio.to_thread(self._add, route)

    def _missing(self, listeners: Iterable[int]) -> dict[int, tuple[str, str | None]]:
        servers = self._servers() if self.servers_read is None else self.servers_read
        out: dict[int, tuple[str, str | None]] = {}
        for listener in sorted(set(listeners)):
            try:
                self._server_for(listener, servers)
            except ProviderError as exc:
                out[listener] = (exc.message, exc.hint)
        return out

    async def missing_servers(self, listeners: Iterable[int]) -> dict[int, tuple[str, str | None]]:
        """Listener -> (why, what to do) for each listener no server of Caddy's takes: adding a route there
        fails, so the plan refuses it rather than list it."""
        return await asyncio.to_thread(self._missing, listeners)

    async def remove_route(self, listener: int, hostname: str) -> None:
        await asyncio.to_thread(self._remove, listener, hostname)


# Handlers that answer the request themselves, so a route holding one ends the chain even when it is
# not `terminal` (a `headers` or `vars` handler passes the request on to the next route, and so does a
# `subroute` none of whose routes matches; a Caddyfile's site block is a terminal route, which counts).
ANSWERING = frozenset({"reverse_proxy", "static_response", "file_server", "error"})


def shadowed_by(server: str, before: list[dict[str, Any]], hostname: str) -> str:
    """Which earlier route of the server takes every request for `hostname` (words), or "" when none.

    Only routes that match every request for it count: no matcher, or a matcher set of host
    patterns alone (a set with a path or another matcher takes only part of the requests)."""
    for index, route in enumerate(before):
        if parse_id(str(route.get("@id", ""))) is not None:
            continue  # mcfleet's own: another name
        handlers = [h.get("handler") for h in route.get("handle") or [] if isinstance(h, dict)]
        if not route.get("terminal") and not ANSWERING.intersection(handlers):
            continue
        match = route.get("match")
        if not match:
            return f"route #{index} of Caddy's server {server} (it matches every request)"
        for matcher in match if isinstance(match, list) else []:
            hosts = matcher.get("host") if isinstance(matcher, dict) else None
            if isinstance(hosts, list) and set(matcher) == {"host"}:
                hit = next((h for h in hosts if isinstance(h, str) and host_pattern_covers(h, hostname)), None)
                if hit is not None:
                    return f"route #{index} of Caddy's server {server} (host {hit})"
    return ""


def host_pattern_covers(pattern: str, hostname: str) -> bool:
    """Caddy's host matcher: case-insensitive, and `*` stands for exactly one label."""
    want, have = pattern.lower().split("."), hostname.lower().split(".")
    return len(want) == len(have) and all(w in ("*", h) for w, h in zip(want, have, strict=True))
