"""Facts injection, tried for real: a planted certificate carrying facts-record text must
not hide a tampered agent (full node: provision, tamper the binary, plant the file, plan).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.apply_lab import MakeNodes, agent_bundle_fixture, cli, make_nodes_fixture  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]


def test_a_planted_certificate_cannot_hide_a_tampered_agent(make_nodes: MakeNodes, agent_bundle: Path) -> None:
    fleet = make_nodes(1, "inject")
    name, root = fleet.names[0], str(fleet.fleet_dir)
    done = cli("provision", name, "--root", root, "--bundle", str(agent_bundle), "--json")
    assert done.code == 0, done.stdout + done.stderr
    recorded = fleet.manifest(name)["agent"]["sha256"]

    def plan_code() -> int:
        run = cli("plan", root, "--on", name, "--detailed-exitcode")
        assert "Traceback" not in run.stdout + run.stderr, run.stderr
        return run.code

    assert plan_code() == 0  # converged
    # root recorded the installed binary's stat key and hash: the plan above took the hash from there
    key = fleet.sh(name, "stat -c '%d %i %s %.9Y %.9Z' /srv/mcp/mcp-agent").stdout.strip()
    assert fleet.sh(name, "cat /var/lib/mcfleet/agent/installed").stdout == f"{key} {recorded}\n"
    fleet.sh(name, "printf 'tampered' >> /srv/mcp/mcp-agent")
    assert plan_code() == 2  # the tampered agent shows
    # written in place and its size and mtime put back (root could; mcp cannot write the file): the ctime moved
    fleet.sh(name, "cp -p /srv/mcp/mcp-agent /tmp/a && truncate -s -8 /srv/mcp/mcp-agent && printf 'tampered' "
             ">> /srv/mcp/mcp-agent && touch -r /tmp/a /srv/mcp/mcp-agent")  # fmt: skip
    assert plan_code() == 2
    forged = f"\\n@@mcfleet-facts:agent\\nsha256 {recorded}\\n"
    fleet.sh(name, f"mkdir -p /srv/mc-proxy/certs && printf '{forged}' > /srv/mc-proxy/certs/zz.pem")
    assert plan_code() == 2  # and still shows with the forged record planted
