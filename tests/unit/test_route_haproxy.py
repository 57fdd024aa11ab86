"""HAProxy's route map: its file content, and the routes it refuses before calling HAProxy at all."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mcfleet.fleet.models import HaproxyProvider
from mcfleet.providers.base import NoAnswer, ProviderError
from mcfleet.providers.route.base import ProxyRoute
from mcfleet.providers.route.haproxy import HaproxyRoutes, map_key, map_text

# No HAProxy answers here: a call that reached the socket would fail with "does not answer".
ROUTES = HaproxyRoutes(HaproxyProvider(kind="haproxy", admin_socket="/nonexistent/haproxy.sock", map_file="/m"))


def test_the_map_file_is_one_sorted_line_per_route_keyed_by_listener_and_lower_case_name() -> None:
    entries = {map_key(8443, "SNI.example.test"): "10.0.0.2:4443", map_key(443, "a.example.test"): "10.0.0.3:443"}
    assert map_text(entries) == "443/a.example.test 10.0.0.3:443\n8443/sni.example.test 10.0.0.2:4443\n"
    assert map_text({}) == ""


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (ProxyRoute(443, "web.example.test", "127.0.0.1:8080", "l7"), "carries only l4 routes"),
        (ProxyRoute(8443, "sni.example.test", "[::1]:8443", "l4"), "is not <IPv4 address>:<port>"),
        (ProxyRoute(8443, "sni.example.test", "10.0.0.2", "l4"), "is not <IPv4 address>:<port>"),
    ],
)
def test_routes_haproxy_cannot_carry_are_refused_with_what_to_do(route: ProxyRoute, message: str) -> None:
    with pytest.raises(ProviderError, match=message) as raised:
        asyncio.run(ROUTES.add_route(route))
    assert raised.value.hint


def test_an_admin_socket_reached_through_a_forward_is_named_by_its_path_on_the_node(tmp_path: Path) -> None:
    """A node's HAProxy is asked through a local forward of its admin socket: what fails names the socket the
    operator configured (providers.route_l4.admin_socket), not the forward's temporary path."""
    local = str(tmp_path / "fwd.sock")
    routes = HaproxyRoutes(HaproxyProvider(kind="haproxy", admin_socket="/srv/mc-proxy/haproxy.sock", map_file="/m"),
                           local_socket=local)  # fmt: skip
    with pytest.raises(ProviderError) as raised:
        asyncio.run(routes.list_routes())
    assert "/srv/mc-proxy/haproxy.sock does not answer" in raised.value.message and local not in raised.value.message

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            writer.close()

    async def hung() -> None:  # takes the connection, never answers
        server = await asyncio.start_unix_server(silent, path=local)
        async with server:
            await routes.list_routes()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("mcfleet.providers.route.haproxy.TIMEOUT", 0.2)
        with pytest.raises(ProviderError) as slow:
            asyncio.run(hung())
    assert "/srv/mc-proxy/haproxy.sock did not answer `show …` within 0.2 s" in slow.value.message
    assert local not in slow.value.message


def test_a_connection_closed_without_an_answer_is_an_error_not_an_empty_map(tmp_path: Path) -> None:
    """HAProxy ends every answer with an empty line, so no byte at all is not its answer: the SSH forward of a
    socket the node does not have takes the connection and closes it.  Was: an empty map, which the plan
    showed as every l4 route missing ("drift: the proxy serves no route for it")."""
    local = str(tmp_path / "fwd.sock")
    routes = HaproxyRoutes(HaproxyProvider(kind="haproxy", admin_socket="/srv/mc-proxy/haproxy.sock", map_file="/m"),
                           local_socket=local)  # fmt: skip

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()  # the command taken (closing with it unread would be a reset)
        writer.close()

    async def closed(command: str) -> None:
        server = await asyncio.start_unix_server(hang_up, path=local)
        async with server:
            await routes._cmd(command)

    with pytest.raises(ProviderError) as raised:
        asyncio.run(closed("show map /m"))
    assert raised.value.message == (
        "HAProxy's admin socket /srv/mc-proxy/haproxy.sock closed the connection without answering `show …`"
    )
    assert not isinstance(raised.value, NoAnswer)  # a read: nothing was changed
    with pytest.raises(NoAnswer):  # a change sent: HAProxy may have made it (the route is kept as unconfirmed)
        asyncio.run(closed("add map /m 8443/sni.example.test 10.0.0.2:4443"))
