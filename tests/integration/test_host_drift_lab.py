"""Host-level drift on a full lab node: a fresh node's plan lists what apply does; a hand edit
of each managed host fact shows as `~` (or `+` when removed) with old -> new, apply converges it,
and the plan is clean.  Facts: resolvers (resolv.conf, or systemd-resolved's drop-in, zone unit
and live per-link routing, dhclient's and dhcpcd's hooks, NetworkManager's drop-in), /srv/mcp owner
and mode, the agent unit's content and enabled state, linger and the podman socket of mcp."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcfleet.fleet.resolvers import (
    DHCLIENT_HOOK,
    DHCLIENT_HOOK_TEXT,
    DHCPCD_HOOK,
    DHCPCD_HOOK_TEXT,
    NM_DROPIN,
    NM_DROPIN_TEXT,
)
from tests.integration.apply_lab import MakeNodes, agent_bundle_fixture, cli, make_nodes_fixture  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]


def _plan(root: str, name: str) -> dict[str, dict[str, Any]]:
    run = cli("plan", root, "--on", name, "--json")
    assert run.code == 0, run.stdout + run.stderr
    return {f"{a['phase']} {a['subject']}": a for a in json.loads(run.stdout)["actions"]}


def _apply(root: str, name: str, bundle: Path) -> None:
    run = cli("apply", root, "--on", name, "--bundle", str(bundle), "--json")
    assert run.code == 0, run.stdout + run.stderr


def _clean(root: str, name: str) -> None:
    run = cli("plan", root, "--on", name, "--detailed-exitcode")
    assert run.code == 0, f"the plan is not clean after apply:\n{run.stdout}{run.stderr}"


def test_host_level_drift_is_planned_as_changes_and_apply_converges_it(
    make_nodes: MakeNodes, agent_bundle: Path
) -> None:
    fleet = make_nodes(1, "drift")
    name = fleet.names[0]
    root = str(fleet.fleet_dir)

    # a fresh node: the plan names every host-level change provisioning then makes
    fresh = _plan(root, name)
    assert fresh["host user mcp"]["kind"] == "create"
    assert fresh["host resolvers"]["kind"] == "update"  # the node's own resolv.conf is rewritten
    assert fresh["host resolvers"]["after"][-1] == "options timeout:1 attempts:2"
    assert fresh["host dir /srv/mcp"]["kind"] == "create"
    assert fresh["host linger mcp"]["kind"] == "create"
    assert fresh["host podman.socket mcp"]["kind"] == "create"
    assert fresh["agent agent"]["kind"] == "create"
    assert "host dns zone " + fleet.lab.zone not in fresh  # glibc: no per-domain routing
    _apply(root, name, agent_bundle)
    _clean(root, name)

    # hand edits: resolvers, the agent's folder, the unit disabled at boot
    fleet.sh(name, "echo 'nameserver 10.9.9.9' > /etc/resolv.conf")
    fleet.sh(name, "chmod 0755 /srv/mcp && chown root /srv/mcp")
    fleet.sh(name, "systemctl disable --quiet mcp-agent.service")
    drift = _plan(root, name)
    assert drift["host resolvers"]["kind"] == "update"
    assert drift["host resolvers"]["before"] == ["nameserver 10.9.9.9"]
    assert drift["host dir /srv/mcp"]["kind"] == "update"
    assert drift["host dir /srv/mcp"]["before"] == "0:850 755"
    assert drift["host dir /srv/mcp"]["after"] == "850:850 750"
    agent = drift["agent agent"]
    assert agent["kind"] == "update" and "disabled" in agent["reason"]
    assert (agent["before"]["enabled"], agent["after"]["enabled"]) == ("disabled", "enabled")
    _apply(root, name, agent_bundle)
    _clean(root, name)
    assert fleet.sh(name, "systemctl is-enabled mcp-agent.service").stdout.strip() == "enabled"
    assert fleet.sh(name, "stat -c '%U %a' /srv/mcp").stdout.split() == ["mcp", "750"]

    # the unit's content edited by hand
    fleet.sh(name, "sed -i 's/^RestartSec=.*/RestartSec=30/' /etc/systemd/system/mcp-agent.service")
    unit = _plan(root, name)["agent agent"]
    assert unit["kind"] == "update" and "unit file changed" in unit["reason"]
    assert unit["before"]["unit_sha256"] != unit["after"]["unit_sha256"]
    _apply(root, name, agent_bundle)
    _clean(root, name)
    assert "RestartSec=30" not in fleet.sh(name, "cat /etc/systemd/system/mcp-agent.service").stdout

    _a_dropin_is_moved_to_roots_store(fleet, root, name, agent_bundle)

    # linger and mcp's podman socket removed by hand
    fleet.sh(name, "loginctl disable-linger mcp && rm /srv/mcp/.config/systemd/user/sockets.target.wants/podman.socket")
    gone = _plan(root, name)
    assert (gone["host linger mcp"]["kind"], gone["host linger mcp"]["before"]) == ("create", False)
    assert gone["host podman.socket mcp"]["kind"] == "create"
    _apply(root, name, agent_bundle)
    _clean(root, name)
    assert fleet.sh(name, "ls /var/lib/systemd/linger").stdout.split() == ["mcp"]
    assert fleet.sh(name, "test -S /run/user/850/podman/podman.sock", check=False).returncode == 0

    _a_stopped_podman_socket_is_started(fleet, root, name, agent_bundle)


def _a_dropin_is_moved_to_roots_store(fleet: Any, root: str, name: str, agent_bundle: Path) -> None:
    """A drop-in (`systemctl edit`) overrides the unit while its file stays as installed: the plan
    said no changes while the agent ran with another hand's settings.  Apply moves it to root's store."""
    dropin = "/etc/systemd/system/mcp-agent.service.d/override.conf"
    fleet.sh(name, f"mkdir -p {dropin.rpartition('/')[0]} && printf '[Service]\\nRestartSec=30\\n' > {dropin} "
                   "&& systemctl daemon-reload")  # fmt: skip
    assert fleet.sh(name, "systemctl show -p RestartUSec --value mcp-agent.service").stdout.strip() == "30s"
    overridden = _plan(root, name)["agent agent"]
    assert overridden["kind"] == "update"
    assert overridden["reason"].startswith(f"drop-in {dropin} overrides mcp-agent.service"), overridden["reason"]
    _apply(root, name, agent_bundle)
    _clean(root, name)
    assert fleet.sh(name, "systemctl show -p DropInPaths --value mcp-agent.service").stdout.strip() == ""
    kept = "/var/lib/mcfleet/dropins/etc_systemd_system_mcp-agent.service.d_override.conf"
    assert "RestartSec=30" in fleet.sh(name, f"cat {kept}").stdout  # moved, not deleted


def _a_stopped_podman_socket_is_started(fleet: Any, root: str, name: str, agent_bundle: Path) -> None:
    """mcp's podman socket stopped by hand (enabled still; its socket file stays behind): the agent cannot
    reach podman, so the plan says the socket is to be started and that the containers are unknown (was:
    no host change, and every container "missing"; apply then failed on "podman list failed")."""
    user = "runuser -u mcp -- env XDG_RUNTIME_DIR=/run/user/850 systemctl --user"
    fleet.sh(name, f"cd / && {user} stop podman.socket podman.service")
    # podman.service stops with KillMode=process: its worker (re-executed in the rootless user namespace)
    # lives on with the inherited listening socket until its idle timeout (5 s), and what it serves is not
    # the stopped state yet; a loaded machine plans within that window
    listens = 'awk \'$4 == "00010000" && $8 == "/run/user/850/podman/podman.sock"\' /proc/net/unix'
    deadline = time.monotonic() + 30
    while fleet.sh(name, listens).stdout.strip():
        assert time.monotonic() < deadline, "podman's worker still listens 30 s after podman.service stopped"
        time.sleep(0.2)
    stopped = cli("plan", root, "--on", name, "--json")
    assert stopped.code == 0, stopped.stdout + stopped.stderr
    report = json.loads(stopped.stdout)
    [socket] = [a for a in report["actions"] if a["subject"] == "podman.socket mcp"]
    assert (socket["kind"], socket["before"], socket["after"]) == ("update", "stopped", "listening"), socket
    [unknown] = [u for u in report["unobserved"] if u["phase"] == "deploy"]
    assert unknown["reason"].startswith("podman's API did not answer the agent ("), unknown
    assert "\n" not in unknown["reason"]
    _apply(root, name, agent_bundle)
    _clean(root, name)
    assert fleet.sh(name, f"cd / && {user} is-active podman.socket").stdout.strip() == "active"


def test_resolved_zone_routing_is_planned_and_converged(make_nodes: MakeNodes, agent_bundle: Path) -> None:
    fleet = make_nodes(1, "dnsz", login="doas")  # reached as kyle with doas: facts and provisioning escalate
    name = fleet.names[0]
    root = str(fleet.fleet_dir)
    zone = fleet.lab.zone
    node = fleet.nodes[0]
    mcns = node.address.rsplit(".", 1)[0] + ".53"  # on the lab link: `ip route get` names eth0
    # and one of the node's own addresses, as on MCNS's own host (rift): routed through lo, which
    # resolved refuses, so the unit takes the link holding it
    own = "192.0.2.99"
    fleet.sh(name, f"ip addr add {own}/32 dev eth0")
    host_file = fleet.fleet_dir / "hosts" / name / "host.json"
    host = json.loads(host_file.read_text())
    host["dns"] = {"resolver": "systemd-resolved", "nameservers": [mcns, own], "fallback": ["1.1.1.1"]}
    host_file.write_text(json.dumps(host, indent=2))
    fleet.sh(name, "systemctl enable --now systemd-resolved.service")
    fleet.sh(name, "ln -sf ../run/systemd/resolve/stub-resolv.conf /etc/resolv.conf")
    # the node used resolv.conf before: mcfleet's dhclient hook is left, and would keep the leases'
    # servers from resolved
    fleet.sh(name, f"cat > {DHCLIENT_HOOK} <<'EOF'\n{DHCLIENT_HOOK_TEXT}EOF")
    fleet.sh(name, f"cat > {DHCPCD_HOOK} <<'EOF'\n{DHCPCD_HOOK_TEXT}EOF")  # and dhcpcd's, as mcfleet wrote it

    fresh = _plan(root, name)
    hook = fresh["host dhclient hook"]
    assert (hook["kind"], hook["after"]) == ("delete", None) and "earlier configuration" in hook["reason"], hook
    assert fresh["host dhcpcd hook"]["kind"] == "delete", fresh["host dhcpcd hook"]
    assert fresh["host resolvers"]["kind"] == "create"
    assert fresh["host resolvers"]["after"][-1] == "DNS=1.1.1.1"
    routing = fresh[f"host dns zone {zone}"]
    assert (routing["kind"], routing["before"]["routed"]) == ("create", "nothing")
    assert routing["after"]["routed"] == f"{mcns} {own}"
    _apply(root, name, agent_bundle)
    _clean(root, name)
    assert f"~{zone}" in fleet.sh(name, "resolvectl domain eth0").stdout
    assert fleet.sh(name, "resolvectl dns eth0").stdout.split()[-2:] == [mcns, own]
    assert fleet.sh(name, f"test -e {DHCLIENT_HOOK}", check=False).returncode == 1
    assert fleet.sh(name, f"test -e {DHCPCD_HOOK}", check=False).returncode == 1

    # the link's DNS reset by hand: the unit is still there, the running routing is not
    fleet.sh(name, "resolvectl revert eth0")
    drift = _plan(root, name)[f"host dns zone {zone}"]
    assert drift["kind"] == "update" and f"resolved does not send {zone} to {mcns} {own}" in drift["reason"]
    assert (drift["before"]["routed"], drift["after"]["routed"]) == ("nothing", f"{mcns} {own}")
    _apply(root, name, agent_bundle)
    _clean(root, name)
    assert f"~{zone}" in fleet.sh(name, "resolvectl domain eth0").stdout

    # the unit edited and disabled by hand
    unit_file = "/etc/systemd/system/mcfleet-dns-zone.service"
    fleet.sh(name, f"systemctl disable --quiet mcfleet-dns-zone.service && echo '# x' >> {unit_file}")
    unit = _plan(root, name)[f"host dns zone {zone}"]
    assert "changed on the node" in unit["reason"] and "disabled at boot" in unit["reason"]
    _apply(root, name, agent_bundle)
    _clean(root, name)
    assert fleet.sh(name, "systemctl is-enabled mcfleet-dns-zone.service").stdout.strip() == "enabled"


def _set_subids(fleet: Any, name: str, start: int) -> None:
    host_file = fleet.fleet_dir / "hosts" / name / "host.json"
    host = json.loads(host_file.read_text())
    host["users"]["mcp"].update(subuid={"start": start, "count": 65536}, subgid={"start": start, "count": 65536})
    host_file.write_text(json.dumps(host, indent=2))


def test_subid_range_moves_only_while_nothing_lives_in_it(make_nodes: MakeNodes, agent_bundle: Path) -> None:
    fleet = make_nodes(1, "subid", login="sudo")  # reached as kyle with sudo
    name = fleet.names[0]
    root = str(fleet.fleet_dir)
    _set_subids(fleet, name, 100000)
    _apply(root, name, agent_bundle)
    _clean(root, name)

    # mcp's podman storage is empty and /srv holds nothing of the range: `~` old -> new, apply moves it
    _set_subids(fleet, name, 300000)
    plan = _plan(root, name)
    for label in ("subuid", "subgid"):
        move = plan[f"host {label} mcp"]
        assert move["kind"] == "update", move
        assert (move["before"], move["after"]) == (
            [{"start": 100000, "count": 65536}],
            {"start": 300000, "count": 65536},
        )
    _apply(root, name, agent_bundle)
    _clean(root, name)
    assert fleet.sh(name, "grep ^mcp: /etc/subuid /etc/subgid").stdout.split() == [
        "/etc/subuid:mcp:300000:65536",
        "/etc/subgid:mcp:300000:65536",
    ]

    # an image layer in mcp's storage (a file of container uid 1000, owned by 300999 on the node): refused
    fleet.sh(
        name,
        "d=$(mktemp -d) && mkdir $d/data && echo hi > $d/data/f && chown -R 1000:1000 $d/data "
        "&& tar -C $d --numeric-owner -cf /tmp/layer.tar . && chmod 644 /tmp/layer.tar "
        "&& cd / && runuser -u mcp -- env XDG_RUNTIME_DIR=/run/user/850 HOME=/srv/mcp podman import -q "
        "/tmp/layer.tar localhost/subid-test:1",
    )
    assert fleet.sh(name, "find /srv/mcp/.local/share/containers -uid 300999 | head -n1").stdout.strip()
    _set_subids(fleet, name, 500000)
    refused = cli("plan", root, "--on", name, "--json")
    assert refused.code == 1, refused.stdout + refused.stderr
    acts = {f"{a['phase']} {a['subject']}": a for a in json.loads(refused.stdout)["actions"]}
    move = acts["host subuid mcp"]
    assert move["kind"] == "refuse"
    assert "podman storage holds 1 image layers" in move["reason"] and "files under /srv" in move["reason"]
    assert "podman system reset -f" in move["hint"] and "start" in move["hint"]
    run = cli("apply", root, "--on", name, "--bundle", str(agent_bundle), "--json")
    assert run.code == 1, run.stdout + run.stderr
    assert "300000:65536" in fleet.sh(name, "grep ^mcp: /etc/subuid").stdout  # nothing moved


# The DHCP server's network (TEST-NET-2) and the nameserver its leases name.
DHCP_NET = "198.51.100"
DHCP_DNS = f"{DHCP_NET}.53"


@contextlib.contextmanager
def dhcp_server(node_netns: str, tmp: Path) -> Iterator[str]:
    """A real DHCP server (dnsmasq, DNS off) in a network namespace of its own, on a veth pair whose
    other end is in the node's namespace; yields that end's name.  Its leases name DHCP_DNS as the
    nameserver and no router, so the node's own routes stay."""
    dnsmasq = shutil.which("dnsmasq")
    assert dnsmasq, "dnsmasq is not installed: scripts/setup.sh installs dnsmasq-base (the DHCP server)"
    tag = str(os.getpid())[-7:]
    netns, ours, theirs = f"mcfdh{tag}", f"dh{tag}s", f"dh{tag}n"
    log = tmp / "dnsmasq.log"

    def ip(*argv: str) -> None:
        subprocess.run(["ip", *argv], check=True, capture_output=True)

    ip("netns", "add", netns)
    server = None
    errors = (tmp / "dnsmasq.err").open("wb")
    try:
        ip("link", "add", ours, "type", "veth", "peer", "name", theirs)
        ip("link", "set", theirs, "netns", node_netns)
        ip("link", "set", ours, "netns", netns)
        ip("-n", netns, "addr", "add", f"{DHCP_NET}.1/24", "dev", ours)
        ip("-n", netns, "link", "set", ours, "up")
        server = subprocess.Popen(
            ["ip", "netns", "exec", netns, dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
             "--bind-interfaces", f"--interface={ours}", f"--dhcp-range={DHCP_NET}.50,{DHCP_NET}.99,255.255.255.0,1h",
             "--dhcp-option=option:router", f"--dhcp-option=option:dns-server,{DHCP_DNS}",
             f"--dhcp-leasefile={tmp / 'leases'}", "--pid-file=", "--user=root", f"--log-facility={log}"],
            stdout=subprocess.DEVNULL, stderr=errors,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while "sockets bound" not in (log.read_text() if log.exists() else ""):
            assert server.poll() is None, f"dnsmasq exited: {(tmp / 'dnsmasq.err').read_text()}"
            assert time.monotonic() < deadline, "dnsmasq did not bind its DHCP socket within 10 s"
            time.sleep(0.05)
        yield theirs
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        errors.close()
        ip("netns", "del", netns)  # takes the veth pair with it


def test_a_dhcp_lease_leaves_the_fleets_resolvers_alone(
    make_nodes: MakeNodes, agent_bundle: Path, tmp_path: Path
) -> None:
    """Debian 12's DHCP client (isc-dhcp-client) rewrites /etc/resolv.conf with the lease's nameserver at
    every bind and renewal, which drops the fallbacks until the next apply.  A resolv.conf host gets a
    dhclient hook that stops it: planned, applied, and tried with a real lease (dhclient on the node,
    dnsmasq serving); without the hook the same lease replaces the resolvers."""
    fleet = make_nodes(1, "dhcp")
    name = fleet.names[0]
    root = str(fleet.fleet_dir)

    fresh = _plan(root, name)
    hook = fresh["host dhclient hook"]
    assert (hook["kind"], hook["after"]) == ("create", ["make_resolv_conf() {", ":", "}"]), hook
    _apply(root, name, agent_bundle)
    _clean(root, name)
    assert fleet.sh(name, f"cat {DHCLIENT_HOOK}").stdout == DHCLIENT_HOOK_TEXT
    fleets = fleet.sh(name, "cat /etc/resolv.conf").stdout
    assert "nameserver 1.1.1.1" in fleets

    with dhcp_server(fleet.nodes[0].netns, tmp_path) as link:
        # -1: one try, then in the background holding the lease; -x stops it without a release
        lease = f"timeout 60 dhclient -1 -v -lf /run/dhcp-test.leases -pf /run/dhcp-test.pid {link} 2>&1"
        stop = "dhclient -x -pf /run/dhcp-test.pid"
        got = fleet.sh(name, f"{lease}; {stop}").stdout
        assert f"DHCPACK of {DHCP_NET}." in got, got  # a real lease, bound
        assert f"{DHCP_NET}." in fleet.sh(name, f"ip -4 -br addr show {link}").stdout
        assert fleet.sh(name, "cat /etc/resolv.conf").stdout == fleets
        _clean(root, name)

        # the hook removed by hand: the next lease (a reboot's REQUEST of the same address) rewrites resolv.conf
        fleet.sh(name, f"rm {DHCLIENT_HOOK}")
        fleet.sh(name, f"{lease}; {stop}")
        assert fleet.sh(name, "grep ^nameserver /etc/resolv.conf").stdout == f"nameserver {DHCP_DNS}\n"
        drift = _plan(root, name)
        assert drift["host resolvers"]["before"] == [f"nameserver {DHCP_DNS}"]
        assert drift["host dhclient hook"]["kind"] == "create"
        _apply(root, name, agent_bundle)
        _clean(root, name)
        fleet.sh(name, f"{lease}; {stop}")
        assert fleet.sh(name, "cat /etc/resolv.conf").stdout == fleets


def test_a_dhcpcd_lease_leaves_the_fleets_resolvers_alone(
    make_nodes: MakeNodes, agent_bundle: Path, tmp_path: Path
) -> None:
    """dhcpcd (Debian 13's DHCP client, in Debian 12 as well) rewrites /etc/resolv.conf with the lease's
    nameserver just as dhclient does.  A resolv.conf host gets dhcpcd's enter hook, which makes it skip
    its resolv.conf hook: planned, applied, and tried with a real lease (dhcpcd on the node, dnsmasq
    serving).  An enter hook the operator wrote is never replaced: the plan refuses, a lease shows why,
    and once the operator turns the hook off in /etc/dhcpcd.conf (the refusal's hint) the host converges."""
    fleet = make_nodes(1, "dhcpcd")
    name = fleet.names[0]
    root = str(fleet.fleet_dir)
    # Without a resolvconf command dhcpcd writes /etc/resolv.conf itself, as on a Debian server without
    # systemd-resolved (the lab's nodes have it installed, disabled, and its resolvconf link).
    fleet.sh(name, 'mv "$(command -v resolvconf)" /root/resolvconf.aside')

    fresh = _plan(root, name)
    hook = fresh["host dhcpcd hook"]
    assert (hook["kind"], hook["after"]) == ("create", ['skip_hooks="$skip_hooks resolv.conf"']), hook
    _apply(root, name, agent_bundle)
    _clean(root, name)
    assert fleet.sh(name, f"cat {DHCPCD_HOOK}").stdout == DHCPCD_HOOK_TEXT
    fleets = fleet.sh(name, "cat /etc/resolv.conf").stdout
    assert "nameserver 1.1.1.1" in fleets

    netns = fleet.nodes[0].netns
    with dhcp_server(netns, tmp_path) as link:
        # dhcpcd sets the link's promote_secondaries, which a container cannot write (/proc/sys is read-only
        # there); set from outside first, dhcpcd leaves it
        sysctl = f"net.ipv4.conf.{link}.promote_secondaries=1"
        subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw", sysctl], check=True)
        lease = f"timeout 60 dhcpcd --oneshot --ipv4only --waitip=4 {link} 2>&1"  # exits once bound
        got = fleet.sh(name, lease).stdout
        assert f"leased {DHCP_NET}." in got, got  # a real lease, bound
        assert f"{DHCP_NET}." in fleet.sh(name, f"ip -4 -br addr show {link}").stdout
        assert fleet.sh(name, "cat /etc/resolv.conf").stdout == fleets
        _clean(root, name)

        # an enter hook of the operator's own: not replaced, refused with the way out
        fleet.sh(name, f"printf '# site: the MTU of the uplink\\nifmtu=1400\\n' > {DHCPCD_HOOK}")
        run = cli("plan", root, "--on", name, "--json")
        refused = {f"{a['phase']} {a['subject']}": a for a in json.loads(run.stdout)["actions"]}["host dhcpcd hook"]
        assert refused["kind"] == "refuse" and "is not mcfleet's" in refused["reason"], refused
        assert "nohook resolv.conf" in refused["hint"]
        # ... and it is what keeps the fallbacks: the next lease replaces them
        fleet.sh(name, lease)
        assert fleet.sh(name, "grep ^nameserver /etc/resolv.conf").stdout == f"nameserver {DHCP_DNS}\n"
        assert cli("apply", root, "--on", name, "--bundle", str(agent_bundle), "--json").code == 1

        # the operator follows the hint: dhcpcd.conf turns the hook off; their enter hook stays as it was
        fleet.sh(name, "echo 'nohook resolv.conf' >> /etc/dhcpcd.conf")
        drift = _plan(root, name)
        assert "host dhcpcd hook" not in drift and drift["host resolvers"]["kind"] == "update", drift
        _apply(root, name, agent_bundle)
        _clean(root, name)
        fleet.sh(name, lease)
        assert fleet.sh(name, "cat /etc/resolv.conf").stdout == fleets
        assert "ifmtu=1400" in fleet.sh(name, f"cat {DHCPCD_HOOK}").stdout


# What an operator's NetworkManager does on a server: its connections' DNS (here a global DNS server standing in
# for a lease's) written to a plain /etc/resolv.conf (rc-manager=file: the lab's rootfs also has systemd-resolved's
# resolvconf, which NetworkManager would otherwise hand it to); eth0 unmanaged: the lab configures it, and
# NetworkManager cannot inside the node (no CAP_NET_ADMIN there).
NM_OPERATOR_CONF = (
    "[main]\nrc-manager=file\n[keyfile]\nunmanaged-devices=interface-name:eth0\n"
    "[global-dns-domain-*]\nservers=192.0.2.53\n"
)


def test_networkmanager_leaves_the_fleets_resolvers_alone(make_nodes: MakeNodes, agent_bundle: Path) -> None:
    """NetworkManager rewrites /etc/resolv.conf when it starts, reloads or a connection changes, which drops
    the fallbacks.  A resolv.conf host where it is installed gets a drop-in (dns=none) before its resolv.conf:
    planned, applied, and tried with NetworkManager running (reloaded and restarted); without the drop-in the
    same reload rewrites the file."""
    fleet = make_nodes(1, "nm")
    name = fleet.names[0]
    root = str(fleet.fleet_dir)
    fleet.sh(name, f"printf '%s' '{NM_OPERATOR_CONF}' > /etc/NetworkManager/conf.d/10-operator.conf")
    fleet.sh(name, "systemctl start NetworkManager.service")
    # NetworkManager writes the file once it has started: wait for its line
    fleet.sh(name, "for i in $(seq 50); do grep -q 192.0.2.53 /etc/resolv.conf && break; sleep 0.1; done")
    assert fleet.sh(name, "grep ^nameserver /etc/resolv.conf").stdout == "nameserver 192.0.2.53\n"

    fresh = _plan(root, name)
    dropin = fresh["host networkmanager dns"]
    assert (dropin["kind"], dropin["after"]) == ("create", ["[main]", "dns=none"]), dropin
    assert fresh["host resolvers"]["before"] == ["nameserver 192.0.2.53"]
    _apply(root, name, agent_bundle)
    _clean(root, name)
    assert fleet.sh(name, f"cat {NM_DROPIN}").stdout == NM_DROPIN_TEXT
    fleets = fleet.sh(name, "cat /etc/resolv.conf").stdout
    assert "nameserver 1.1.1.1" in fleets

    for again in ("reload", "restart"):
        fleet.sh(name, f"systemctl {again} NetworkManager.service && sleep 1")
        assert fleet.sh(name, "systemctl is-active NetworkManager.service").stdout.strip() == "active"
        assert fleet.sh(name, "cat /etc/resolv.conf").stdout == fleets, again
    _clean(root, name)

    # the drop-in removed by hand: the next reload rewrites resolv.conf, and the plan puts both back
    fleet.sh(name, f"rm {NM_DROPIN} && systemctl reload NetworkManager.service")
    fleet.sh(name, "for i in $(seq 50); do grep -q 192.0.2.53 /etc/resolv.conf && break; sleep 0.1; done")
    assert fleet.sh(name, "grep ^nameserver /etc/resolv.conf").stdout == "nameserver 192.0.2.53\n"
    drift = _plan(root, name)
    assert drift["host networkmanager dns"]["kind"] == "create"
    assert drift["host resolvers"]["before"] == ["nameserver 192.0.2.53"]
    _apply(root, name, agent_bundle)
    _clean(root, name)
    fleet.sh(name, "systemctl reload NetworkManager.service && sleep 1")
    assert fleet.sh(name, "cat /etc/resolv.conf").stdout == fleets
