"""mc-proxy's gRPC admin API (AddRoute = idempotent upsert, RemoveRoute, ListRoutes).

mc-proxy listens on a unix socket on its node (`/srv/mc-proxy/mc-proxy.sock`); the caller
passes a local path that reaches it (`SshConnection.forward_unix`, which tunnels through
the host's SSH connection).  The message set is reconstructed from the platform's
documents (proto/mcproxy.proto says so).
"""

from __future__ import annotations

import grpc

from mcfleet.agent.proto import mcproxy_pb2, mcproxy_pb2_grpc
from mcfleet.providers.base import ProviderError
from mcfleet.providers.route.base import ProxyRoute

WHAT = "mc-proxy"
TIMEOUT = 15.0


def to_proto(route: ProxyRoute) -> mcproxy_pb2.Route:
    return mcproxy_pb2.Route(
        listener=route.listener,
        hostname=route.hostname,
        backend=route.backend,
        mode=route.mode,
        tls_cert=route.cert,
        tls_key=route.key,
    )


def from_proto(route: mcproxy_pb2.Route) -> ProxyRoute:
    return ProxyRoute(route.listener, route.hostname, route.backend, route.mode, route.tls_cert, route.tls_key)


class McProxyRoutes:
    def __init__(self, local_socket: str, remote_socket: str) -> None:
        self.target = f"unix://{local_socket}"
        self.remote_socket = remote_socket

    def _fail(self, exc: grpc.aio.AioRpcError, what: str) -> ProviderError:
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            return ProviderError(
                f"{WHAT} on {self.remote_socket} is unreachable ({what}): {exc.details()}",
                hint="start mc-proxy on the node (or fix providers.route.socket), then re-run apply",
            )
        return ProviderError(
            f"{WHAT} refused {what}: {exc.code().name}: {exc.details()}", hint="check mc-proxy's log on the node"
        )

    async def list_routes(self) -> dict[str, ProxyRoute]:
        async with grpc.aio.insecure_channel(self.target) as channel:
            stub = mcproxy_pb2_grpc.ProxyAdminStub(channel)
            try:
                reply = await stub.ListRoutes(mcproxy_pb2.ListRoutesRequest(), timeout=TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                raise self._fail(exc, "ListRoutes") from None
        routes = [from_proto(r) for r in reply.routes]
        return {r.key_id: r for r in routes}

    async def add_route(self, route: ProxyRoute) -> None:
        async with grpc.aio.insecure_channel(self.target) as channel:
            stub = mcproxy_pb2_grpc.ProxyAdminStub(channel)
            try:
                await stub.AddRoute(mcproxy_pb2.AddRouteRequest(route=to_proto(route)), timeout=TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                raise self._fail(exc, f"AddRoute {route.key_id}") from None

    async def remove_route(self, listener: int, hostname: str) -> None:
        async with grpc.aio.insecure_channel(self.target) as channel:
            stub = mcproxy_pb2_grpc.ProxyAdminStub(channel)
            request = mcproxy_pb2.RemoveRouteRequest(listener=listener, hostname=hostname)
            try:
                await stub.RemoveRoute(request, timeout=TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                raise self._fail(exc, f"RemoveRoute {listener}/{hostname}") from None
