"""Contract fake of MCNS's record API, written from the platform documents (not MCNS's code).

What the documents say, and this fake enforces: REST POST/GET/PUT/DELETE on
`/v1/zones/{zone}/records`; MCIAS bearer token required (401 without, 403 for a wrong
one); names are scoped: a record outside the zone is refused; CNAME exclusivity; the SOA
serial bumps on every mutation.  The body shape (`{"id","name","type","value","ttl"}`,
`/records/{id}` for PUT and DELETE) is reconstructed: the documents do not give it.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class McnsState:
    zone: str
    token: str
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    serial: int = 1
    next_id: int = 1
    calls: list[str] = field(default_factory=list)  # "METHOD path" of every authorised call
    down: bool = False  # answer 503 to everything
    # a server policy some record APIs have (the documents do not say MCNS has one): a lower TTL is stored as it
    min_ttl: int = 0
    # a record name whose POST waits for this event before the record is stored (a server slow to answer)
    hold: dict[str, threading.Event] = field(default_factory=dict)
    holding: threading.Event = field(default_factory=threading.Event)  # set once a POST waits on `hold`


def _in_zone(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


def _handler(state: McnsState) -> type[http.server.BaseHTTPRequestHandler]:
    prefix = f"/v1/zones/{state.zone}/records"

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, code: int, body: Any) -> None:
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _gate(self) -> str | None:
            """The record id part of the path ('' for the collection), or None when answered already."""
            if state.down:
                self._send(503, {"error": "mcns is shutting down"})
                return None
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Bearer "):
                self._send(401, {"error": "missing bearer token"})
                return None
            if auth[len("Bearer ") :] != state.token:
                self._send(403, {"error": "token not valid for this zone"})
                return None
            if not self.path.startswith(prefix):
                self._send(404, {"error": f"no such zone or path {self.path}"})
                return None
            state.calls.append(f"{self.command} {self.path}")
            return self.path[len(prefix) :].lstrip("/")

        def _body(self) -> dict[str, Any] | None:
            data = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            name, rtype = data.get("name", ""), data.get("type", "")
            if not _in_zone(name, state.zone):
                self._send(403, {"error": f"name {name} is outside zone {state.zone}"})
                return None
            if rtype not in ("A", "AAAA", "CNAME", "TXT") or not data.get("value"):
                self._send(400, {"error": "type must be A, AAAA, CNAME or TXT, with a value"})
                return None
            others = [r for r in state.records.values() if r["name"] == name and r["id"] != data.get("id")]
            if others and (rtype == "CNAME" or any(r["type"] == "CNAME" for r in others)):
                self._send(409, {"error": f"CNAME exclusivity: {name} has other records"})
                return None
            return data

        def do_GET(self) -> None:
            rid = self._gate()
            if rid is None:
                return
            if rid:
                record = state.records.get(int(rid)) if rid.isdigit() else None
                self._send(200, record) if record else self._send(404, {"error": "no such record"})
                return
            self._send(200, {"records": list(state.records.values()), "serial": state.serial})

        def do_POST(self) -> None:
            rid = self._gate()
            if rid is None:
                return
            data = self._body()
            if data is None:
                return
            if (gate := state.hold.get(data["name"])) is not None:
                state.holding.set()
                gate.wait(30)
            record = {"id": state.next_id, "name": data["name"], "type": data["type"], "value": data["value"],
                      "ttl": max(int(data.get("ttl", 300)), state.min_ttl)}  # fmt: skip
            state.records[state.next_id] = record
            state.next_id += 1
            state.serial += 1
            self._send(201, record)

        def do_PUT(self) -> None:
            rid = self._gate()
            if rid is None:
                return
            if not rid.isdigit() or int(rid) not in state.records:
                self._send(404, {"error": "no such record"})
                return
            data = self._body()
            if data is None:
                return
            record = {**state.records[int(rid)], **{k: data[k] for k in ("name", "type", "value", "ttl") if k in data}}
            record["ttl"] = max(int(record.get("ttl", 300)), state.min_ttl)
            state.records[int(rid)] = record
            state.serial += 1
            self._send(200, record)

        def do_DELETE(self) -> None:
            rid = self._gate()
            if rid is None:
                return
            if not rid.isdigit() or state.records.pop(int(rid), None) is None:
                self._send(404, {"error": "no such record"})
                return
            state.serial += 1
            self._send(200, {"deleted": int(rid)})

    return Handler


@contextmanager
def run_mcns(zone: str, token: str) -> Iterator[tuple[str, McnsState]]:
    """(base URL, state) of a running fake on 127.0.0.1."""
    state = McnsState(zone, token)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
