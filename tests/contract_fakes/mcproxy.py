"""Contract fake of mc-proxy's gRPC admin API, written from the platform documents.

What the documents say, and this fake enforces: the admin API is gRPC on a unix socket;
AddRoute is an idempotent upsert keyed by (listener, hostname) (adding the same route twice
leaves one); RemoveRoute and ListRoutes; modes l4, l7 and re-encrypt, with TLS cert paths for
the modes that end TLS; listeners 443, 8443, 9443.  The message set is reconstructed
(proto/mcproxy.proto), not mc-proxy's real proto.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc

from mcfleet.agent.proto import mcproxy_pb2, mcproxy_pb2_grpc

LISTENERS = (443, 8443, 9443)
MODES = ("l4", "l7", "re-encrypt")


@dataclass
class McProxyState:
    routes: dict[tuple[int, str], mcproxy_pb2.Route] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)


class FakeProxyAdmin(mcproxy_pb2_grpc.ProxyAdminServicer):
    def __init__(self, state: McProxyState) -> None:
        self.state = state

    async def AddRoute(
        self, request: mcproxy_pb2.AddRouteRequest, context: grpc.aio.ServicerContext
    ) -> mcproxy_pb2.AddRouteResponse:
        r = request.route
        self.state.calls.append(f"AddRoute {r.listener}/{r.hostname}")
        if r.listener not in LISTENERS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"no listener on :{r.listener}")
        if r.mode not in MODES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown mode {r.mode!r}")
        if r.mode != "l4" and not (r.tls_cert and r.tls_key):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{r.mode} route needs tls_cert and tls_key")
        if not r.hostname or ":" not in r.backend:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "hostname and backend address:port required")
        created = (r.listener, r.hostname) not in self.state.routes
        self.state.routes[(r.listener, r.hostname)] = r
        return mcproxy_pb2.AddRouteResponse(created=created)

    async def RemoveRoute(
        self, request: mcproxy_pb2.RemoveRouteRequest, context: grpc.aio.ServicerContext
    ) -> mcproxy_pb2.RemoveRouteResponse:
        self.state.calls.append(f"RemoveRoute {request.listener}/{request.hostname}")
        removed = self.state.routes.pop((request.listener, request.hostname), None) is not None
        return mcproxy_pb2.RemoveRouteResponse(removed=removed)

    async def ListRoutes(
        self, request: mcproxy_pb2.ListRoutesRequest, context: grpc.aio.ServicerContext
    ) -> mcproxy_pb2.ListRoutesResponse:
        self.state.calls.append("ListRoutes")
        return mcproxy_pb2.ListRoutesResponse(routes=list(self.state.routes.values()))


async def start_mcproxy(socket_path: str) -> tuple[grpc.aio.Server, McProxyState]:
    state = McProxyState()
    server = grpc.aio.server()
    mcproxy_pb2_grpc.add_ProxyAdminServicer_to_server(FakeProxyAdmin(state), server)
    server.add_insecure_port(f"unix://{socket_path}")
    await server.start()
    return server, state


@contextlib.contextmanager
def mcproxy_fakes(sockets: list[str]) -> Iterator[list[tuple[grpc.aio.Server, McProxyState]]]:
    """An mc-proxy contract fake on each of `sockets`, served by an event loop on its own thread
    (the test itself runs synchronous CLI calls); stopped, and the loop closed with its self-pipe
    sockets, whatever the test did (an unclosed loop surfaces as a ResourceWarning in a later test)."""
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    fakes: list[tuple[grpc.aio.Server, McProxyState]] = []
    try:
        fakes += [asyncio.run_coroutine_threadsafe(start_mcproxy(s), loop).result(30) for s in sockets]
        yield fakes
    finally:
        for server, _state in fakes:
            asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        runner.join(30)
        loop.close()
