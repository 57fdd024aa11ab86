"""The backend for each kind, from fleet.json `providers` (None when the fleet configures none)."""

from __future__ import annotations

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from mcfleet.providers.cert.base import CertBackend
    from mcfleet.providers.dns.base import DnsBackend
    from mcfleet.providers.route.base import RouteBackend

# Each backend is imported in the branch that builds it: the ACME client alone pulls in
# requests, urllib3 and josepy, the RFC 2136 one dnspython, mc-proxy's grpc; a fleet pays
# only for the providers it configures (a plan without providers imports none of them).


def dns_backend(fleet: Fleet) -> DnsBackend | None:
    p = fleet.providers.dns
    if isinstance(p, Rfc2136Provider):
        from mcfleet.providers.dns.rfc2136 import Rfc2136Dns

        return Rfc2136Dns(p, fleet.zone)
    if isinstance(p, McnsProvider):
        from mcfleet.providers.dns.mcns import McnsDns

        return McnsDns(p, fleet.zone)
    return None


def cert_backend(fleet: Fleet) -> CertBackend | None:
    p = fleet.providers.cert
    if isinstance(p, AcmeProvider):
        from mcfleet.providers.cert.acme import AcmeCert

        return AcmeCert(p)
    if isinstance(p, MetacryptProvider):
        from mcfleet.providers.cert.metacrypt import MetacryptCert

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
        from mcfleet.providers.route.caddy import CaddyRoutes

        return CaddyRoutes(provider)
    if isinstance(provider, HaproxyProvider):
        from mcfleet.providers.route.haproxy import HaproxyRoutes

        return HaproxyRoutes(provider)
    if isinstance(provider, McProxyProvider):
        from mcfleet.providers.route.mcproxy import McProxyRoutes

        return McProxyRoutes(local_socket or provider.socket, provider.socket)
    raise AssertionError(provider)
