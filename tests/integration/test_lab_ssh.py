"""Fast lab nodes: real sshd per netns, pinned host keys, private /srv, /etc and hostname."""

from __future__ import annotations

import asyncio

import asyncssh
import pytest

from tests.fixtures_lab import LabFleet

pytestmark = pytest.mark.lab


async def _run_on(fleet: LabFleet, name: str, command: str, known_hosts: object) -> str:
    node = fleet.node(name)
    async with asyncssh.connect(
        node.address,
        port=node.ssh_port,
        username="root",
        client_keys=[str(fleet.client_key)],
        known_hosts=known_hosts,
        connect_timeout=10,
    ) as conn:
        result = await conn.run(command, check=True)
        return str(result.stdout)


def test_every_node_answers_ssh_with_its_pinned_key(lab_fleet: LabFleet) -> None:
    async def all_nodes() -> list[str]:
        return list(
            await asyncio.gather(
                *(_run_on(lab_fleet, n.name, "hostname", lab_fleet.known_hosts(n)) for n in lab_fleet.nodes)
            )
        )

    assert [h.strip() for h in asyncio.run(all_nodes())] == [n.name for n in lab_fleet.nodes]


def test_a_wrong_pinned_host_key_is_refused(lab_fleet: LabFleet) -> None:
    first, second = lab_fleet.nodes[0], lab_fleet.nodes[1]
    # node1's address pinned to node2's key: the host key check must fail.
    wrong = asyncssh.import_known_hosts(f"{first.address} {second.host_key}\n")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        asyncio.run(_run_on(lab_fleet, first.name, "true", wrong))


def test_each_node_has_its_own_srv_etc_and_hostname(lab_fleet: LabFleet) -> None:
    script = (
        "echo $(hostname) > /srv/who && mkdir -p /etc/mcfleet && echo $(hostname) > /etc/mcfleet/identity && "
        "cat /srv/who /etc/mcfleet/identity && ls /srv | wc -l"
    )

    async def write_all() -> list[str]:
        return list(
            await asyncio.gather(
                *(_run_on(lab_fleet, n.name, script, lab_fleet.known_hosts(n)) for n in lab_fleet.nodes)
            )
        )

    for node, out in zip(lab_fleet.nodes, asyncio.run(write_all()), strict=True):
        assert out.split() == [node.name, node.name, "1"]
        # nsenter sees the same private files; the real host does not.
        assert lab_fleet.exec_in(node, ["cat", "/etc/mcfleet/identity"]).stdout.strip() == node.name
    from pathlib import Path

    assert not Path("/etc/mcfleet/identity").exists()
    assert not Path("/srv/who").exists()


def test_stop_and_start_sshd_keeps_the_node_files(lab_fleet: LabFleet) -> None:
    node = lab_fleet.nodes[2]
    lab_fleet.exec_in(node, ["sh", "-c", "echo kept > /srv/kept"])
    lab_fleet.stop_sshd(node)
    with pytest.raises(OSError):
        asyncio.run(_run_on(lab_fleet, node.name, "true", lab_fleet.known_hosts(node)))
    from mcfleet.lab.status import lab_status

    rows = {r["name"]: r for r in asyncio.run(lab_status(lab_fleet.lab.state))["nodes"]}
    assert rows[node.name]["running"] is True and rows[node.name]["healthy"] is False  # what `lab status` shows
    lab_fleet.start_sshd(node)
    rows = {r["name"]: r for r in asyncio.run(lab_status(lab_fleet.lab.state))["nodes"]}
    assert rows[node.name]["healthy"] is True
    assert asyncio.run(_run_on(lab_fleet, node.name, "cat /srv/kept", lab_fleet.known_hosts(node))).strip() == "kept"


def test_nodes_resolve_lab_names_through_their_nameserver(lab_fleet: LabFleet) -> None:
    import json

    import dns.query
    import dns.tsig
    import dns.tsigkeyring
    import dns.update

    knot = lab_fleet.knot
    keyring = dns.tsigkeyring.from_text({knot.key_name: knot.secret()})
    update = dns.update.UpdateMessage(
        knot.zone, keyring=keyring, keyname=knot.key_name, keyalgorithm=dns.tsig.HMAC_SHA256
    )
    update.replace("ns-check", 60, "A", "10.77.0.42")
    dns.query.tcp(update, knot.server, port=knot.port, timeout=5)
    node = lab_fleet.nodes[0]
    host = json.loads((lab_fleet.fleet_dir / "hosts" / node.name / "host.json").read_text())
    nameserver = host["dns"]["nameservers"][0]
    query = (
        "import sys, dnslib; r = dnslib.DNSRecord.question(sys.argv[1], 'A').send(sys.argv[2], 53, timeout=5); "
        "print(dnslib.DNSRecord.parse(r).a.rdata)"
    )
    import sys

    out = lab_fleet.exec_in(node, [sys.executable, "-c", query, f"ns-check.{knot.zone}", nameserver])
    assert out.stdout.strip() == "10.77.0.42"
