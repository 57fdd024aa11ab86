"""The backend for each kind, from fleet.json `providers` (None when the fleet configures none)."""

from __future__ import annotations

from mcfleet.fleet.models import (
    AcmeProvider,
    CaddyProvider,
    Fleet,
    HaproxyProvider,
    McnsProvider,
    McProxyProvider,
    MetacryptProvider,
    Rfc2136Provider,
    RouteProvider,
)
from mcfleet.providers.cert.acme import AcmeCert
from mcfleet.providers.cert.base import CertBackend
from mcfleet.providers.cert.metacrypt import MetacryptCert
from mcfleet.providers.dns.base import DnsBackend
from mcfleet.providers.dns.mcns import McnsDns
from mcfleet.providers.dns.rfc2136 import Rfc2136Dns
from mcfleet.providers.route.base import RouteBackend
from mcfleet.providers.route.caddy import CaddyRoutes
from mcfleet.providers.route.haproxy import HaproxyRoutes
from mcfleet.providers.route.mcproxy import McProxyRoutes


def dns_backend(fleet: Fleet) -> DnsBackend | None:
    p = fleet.providers.dns
    if isinstance(p, Rfc2136Provider):
        return Rfc2136Dns(p, fleet.zone)
    if isinstance(p, McnsProvider):
        return McnsDns(p, fleet.zone)
    return None


def cert_backend(fleet: Fleet) -> CertBackend | None:
    p = fleet.providers.cert
    if isinstance(p, AcmeProvider):
        return AcmeCert(p)
    if isinstance(p, MetacryptProvider):
        return MetacryptCert(p)
    return None


def route_provider(fleet: Fleet, mode: str) -> RouteProvider | None:
    """`route_l4` for l4 routes when set, else `route`."""
    if mode == "l4" and fleet.providers.route_l4 is not None:
        return fleet.providers.route_l4
    return fleet.providers.route


def route_backend(provider: RouteProvider, *, local_socket: str | None = None) -> RouteBackend:
    """mc-proxy needs `local_socket`: a local path forwarded to the node's `provider.socket`."""
    if isinstance(provider, CaddyProvider):
        return CaddyRoutes(provider)
    if isinstance(provider, HaproxyProvider):
        return HaproxyRoutes(provider)
    if isinstance(provider, McProxyProvider):
        return McProxyRoutes(local_socket or provider.socket, provider.socket)
    raise AssertionError(provider)
