"""The agent reads which TCP ports something listens on from the kernel's socket table, and names the
published ports of a container that nothing listens on."""

from __future__ import annotations

import socket
from pathlib import Path

from mcfleet.agent.listeners import listening_ports, published_ports, unforwarded


def test_a_listening_socket_is_seen_and_a_closed_one_is_not() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    assert port not in listening_ports()  # bound, not listening
    server.listen()
    assert port in listening_ports()
    server.close()
    assert port not in listening_ports()


def test_an_ipv6_listener_counts_and_a_missing_table_is_no_error(tmp_path: Path) -> None:
    # /proc/net/tcp6 as the kernel writes it: local address then port in hex, state 0A = LISTEN, 01 = ESTABLISHED
    (tmp_path / "tcp6").write_text(
        "  sl  local_address                         remote_address                        st\n"
        "   0: 00000000000000000000000001000000:4E21 00000000000000000000000000000000:0000 0A\n"
        "   1: 00000000000000000000000001000000:4E22 00000000000000000000000001000000:9C40 01\n"
    )
    assert listening_ports(tmp_path) == {20001}  # no tcp table there: skipped


def test_unforwarded_names_each_published_tcp_port_nothing_listens_on() -> None:
    published = [
        {"host_ip": "127.0.0.1", "container_port": 8080, "host_port": 20001, "range": 1, "protocol": "tcp"},
        {"host_ip": "10.0.0.5", "container_port": 8080, "host_port": 20001, "range": 1, "protocol": "tcp"},
        {"host_ip": "", "container_port": 9000, "host_port": 20010, "range": 3, "protocol": "tcp"},
        {"host_ip": "127.0.0.1", "container_port": 53, "host_port": 20053, "range": 1, "protocol": "udp"},
    ]
    assert unforwarded(published, {20001, 20010, 20011, 20012}) == []
    assert unforwarded(published, {20010, 20012}) == ["0.0.0.0:20011", "10.0.0.5:20001", "127.0.0.1:20001"]
    assert unforwarded([{"host_port": "x"}], set()) == []  # not podman's shape: nothing claimed


def test_the_ports_a_container_publishes_as_podman_lists_them() -> None:
    ports = [
        {"host_ip": "127.0.0.1", "container_port": 8080, "host_port": 20001, "range": 1, "protocol": "tcp"},
        {"host_ip": "", "container_port": 53, "host_port": 5353, "range": 2, "protocol": "udp"},
        {"container_port": 9000, "protocol": "tcp"},  # exposed, not published
    ]
    assert published_ports(ports) == ["tcp/20001", "udp/5353", "udp/5354"]
