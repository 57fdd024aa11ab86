"""Ctrl-C during `mcfleet apply` on a full lab node with real Knot, Pebble and Caddy: what finished before
it (the certificate issued, the route given to Caddy) is recorded in the node's manifest, so that removing
the route later removes them too.  The DNS server is frozen (SIGSTOP) so that apply hangs in its dns phase,
where the Ctrl-C comes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mcfleet.lab.lab import Lab
from mcfleet.lab.peers.knot import KnotInfo
from mcfleet.lab.peers.nodeproxy import providers_json, start_node_proxies
from mcfleet.lab.peers.pebble import PebbleInfo
from mcfleet.observe.manifest import MANIFEST_PATH, NO_ANSWER
from tests.integration.apply_lab import (  # noqa: F401 (fixtures)
    MakeNodes,
    Nodes,
    agent_bundle_fixture,
    cli,
    make_nodes_fixture,
    mcfleet_argv,
)

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]

# as from a terminal: SIGINT at its default (a test runner's worker may ignore it, and children inherit that)
UNDO_IGNORE = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
)


def _one_route_fleet(lab: Lab, knot: KnotInfo, pebble: PebbleInfo, nodes: Nodes, tmp_path: Path) -> str:
    """The node's own Caddy routes one l7 name (certificate from Pebble, A record in Knot): its hostname."""
    [node] = nodes.nodes
    proxies = asyncio.run(start_node_proxies(lab.state, lab.run_dir, node))
    root = nodes.fleet_dir
    fleet = json.loads((root / "fleet.json").read_text())
    fleet["public_domains"] = [knot.zone]
    fleet["providers"].update(providers_json(proxies))
    fleet["providers"]["cert"] = {"kind": "acme", "directory": pebble.directory, "ca_file": pebble.ca_file,
                                  "account_key_file": str(tmp_path / "acme-account.key")}  # fmt: skip
    (root / "fleet.json").write_text(json.dumps(fleet, indent=2))
    hostname = f"int.{knot.zone}"
    set_routes(nodes, [{"hostname": hostname, "mode": "l7", "backend": "127.0.0.1:18182"}])
    return hostname


def set_routes(nodes: Nodes, routes: list[dict[str, Any]]) -> None:
    host_file = nodes.fleet_dir / "hosts" / nodes.names[0] / "host.json"
    host = json.loads(host_file.read_text())
    host["routes"] = routes
    host_file.write_text(json.dumps(host, indent=2))


def _apply_and_ctrl_c_in_dns(knot: KnotInfo, root: Path, agent_bundle: Path) -> tuple[int, str, str]:
    """Apply; freeze Knot as the route phase begins (it is asked nothing there), press Ctrl-C once the dns
    phase began (its update is sent and never answered: it would fail after 10 s).  (exit, said, stderr)"""
    argv = [*mcfleet_argv(), "apply", str(root), "--all", "--yes", "--bundle", str(agent_bundle), "--json"]
    apply = subprocess.Popen([sys.executable, "-c", UNDO_IGNORE, *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert apply.stdout is not None
    seen: list[str] = []
    stopped = False
    try:
        for line in apply.stdout:
            seen.append(line)
            event = json.loads(line)
            if event.get("type") != "event" or event.get("status") != "start":
                continue
            if event["phase"] == "route":
                os.kill(knot.pid, signal.SIGSTOP)
                stopped = True
            elif event["phase"] == "dns":
                assert stopped, seen
                apply.send_signal(signal.SIGINT)
                break
        out, err = apply.communicate(timeout=120)
    finally:
        if stopped:
            os.kill(knot.pid, signal.SIGCONT)
        if apply.poll() is None:
            apply.kill()
    return apply.returncode, "".join(seen) + out + err, err


def test_ctrl_c_in_the_dns_phase_records_the_cert_and_route_done_before(  # noqa: PLR0917 (pytest fixtures)
    lab: Lab, knot: KnotInfo, pebble: PebbleInfo, make_nodes: MakeNodes, agent_bundle: Path, tmp_path: Path
) -> None:
    """QA's reproduction: cert and route done, dns hung (Knot stopped), Ctrl-C.  The manifest lists the
    certificate and the route (was: not written, so the next plan, the route's declaration gone, removed
    neither: Caddy kept the route and the node kept the certificate and its key), and the record whose update
    was on its way to the frozen server, with its value unknown (Knot may take it when it resumes)."""
    nodes = make_nodes(1, "intr")
    hostname = _one_route_fleet(lab, knot, pebble, nodes, tmp_path)
    root = nodes.fleet_dir
    code, said, err = _apply_and_ctrl_c_in_dns(knot, root, agent_bundle)
    assert code == 130, said
    assert "interrupted: stopped at Ctrl-C (what finished is kept, and recorded in each host's manifest" in err, said
    assert "manifest recorded what succeeded before the interruption (agent, cert, route, part of dns)" in err, said
    assert err.count("interrupted:") == 1, err  # that line, not the CLI's generic one as well

    manifest = json.loads(nodes.sh(nodes.names[0], f"cat {MANIFEST_PATH}").stdout)
    assert [c["name"] for c in manifest["certs"]] == [hostname], manifest
    cert_path = manifest["certs"][0]["path"]
    assert [f"{r['listener']}/{r['hostname']}" for r in manifest["routes"]] == [f"443/{hostname}"], manifest
    assert manifest["agent"], manifest  # pushed and confirmed before the Ctrl-C
    assert [(r["name"], r["value"]) for r in manifest["dns"]] == [(hostname, NO_ANSWER)], manifest

    # the route's declaration removed: the plan removes what that apply made, and apply does
    set_routes(nodes, [])
    plan = cli("plan", str(root), "--json")
    subjects = {(a["kind"], a["subject"]) for a in json.loads(plan.stdout)["actions"]}
    assert ("delete", f"route 443/{hostname}") in subjects and ("delete", f"cert {hostname}") in subjects, plan.why
    assert ("delete", f"dns {hostname}") in subjects, plan.why  # whether Knot took the update or not
    run = cli("apply", str(root), "--all", "--yes", "--bundle", str(agent_bundle), "--json")
    assert run.code == 0, run.why
    left = nodes.sh(nodes.names[0], f"ls {cert_path} 2>/dev/null || true").stdout.strip()
    assert left == "", left
