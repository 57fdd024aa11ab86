"""Route facts: host matchers read from a caddy route list (pure part), and a dead admin API."""

from __future__ import annotations

import asyncio
import socket

from mcfleet.observe.routes import hostnames_of, observed_hostnames


def test_host_matchers_including_subroutes_and_junk() -> None:
    routes = [
        {"@id": "a", "match": [{"host": ["a.example.test", "b.example.test"]}], "handle": []},
        {
            "match": [{"path": ["/x"]}],
            "handle": [{"handler": "subroute", "routes": [{"match": [{"host": ["c.example.test"]}]}]}],
        },
        {"match": None},
        "junk",
        {"match": [{"host": [3, "d.example.test"]}]},
    ]
    assert hostnames_of(routes) == ["a.example.test", "b.example.test", "c.example.test", "d.example.test"]
    assert hostnames_of(None) == []


def test_a_dead_admin_api_is_an_error_value() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    served, error = asyncio.run(observed_hostnames(f"http://127.0.0.1:{port}", "edge"))
    assert served is None
    assert error is not None and error.startswith(f"caddy admin API at http://127.0.0.1:{port}:")
