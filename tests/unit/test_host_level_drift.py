"""Host-level drift: the resolver file and the agent's folder, node vs files (pure diff + facts parsing)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from mcfleet.fleet.host_level import HostLevelWant, WantedDir, host_level_want
from mcfleet.fleet.load import load_fleet
from mcfleet.fleet.models import Dns
from mcfleet.fleet.resolvers import (
    DHCLIENT_HOOK,
    DHCLIENT_HOOK_TEXT,
    DHCPCD_HOOK,
    DHCPCD_HOOK_TEXT,
    NM_DROPIN,
    NM_DROPIN_TEXT,
    ResolverFile,
    dhclient_hook,
    dhcpcd_hook,
    networkmanager_dropin,
    resolver_file,
)
from mcfleet.kinds.host_level import host_level_diff
from mcfleet.observe.facts import Facts
from mcfleet.observe.hostlevel import DirFacts, HostLevelFacts, host_level_from
from mcfleet.observe.parse import FramedOutput
from mcfleet.observe.script import ScriptInputs, probes

DNS = Dns(nameservers=["10.0.0.53", "10.0.1.53"], fallback=["1.1.1.1", "8.8.8.8"])
WANT = HostLevelWant("resolv.conf", resolver_file(DNS), WantedDir("/srv/mcp", 850, 850, "750"))
GOOD = HostLevelFacts(resolv_conf=WANT.resolver_file.text, agent_dir=DirFacts(uid=850, gid=850, mode="750"))


def _facts(seen: HostLevelFacts | None) -> Facts:
    return Facts(host="n1", host_level=seen)


def _subjects(seen: HostLevelFacts | None, want: HostLevelWant = WANT, os: str = "debian") -> list[tuple[str, str]]:
    return [(a.kind, a.subject) for a in host_level_diff("n1", os, want, _facts(seen))]


def test_in_sync_is_no_action() -> None:
    assert _subjects(GOOD) == []


def test_resolvers_edited_by_hand_show_old_and_new() -> None:
    edited = GOOD.model_copy(update={"resolv_conf": "nameserver 10.0.0.53\n"})
    [act] = host_level_diff("n1", "debian", WANT, _facts(edited))
    assert (act.kind, act.subject) == ("update", "resolvers")
    assert act.before == ["nameserver 10.0.0.53"]
    assert act.after == [
        "nameserver 10.0.0.53",
        "nameserver 10.0.1.53",
        "nameserver 1.1.1.1",
        "options timeout:1 attempts:2",
    ]


def test_a_fresh_node_gets_the_resolver_file_and_the_folder() -> None:
    fresh = HostLevelFacts(resolv_conf="nameserver 10.255.255.53\n")
    assert _subjects(fresh) == [("update", "resolvers"), ("create", "dir /srv/mcp")]


def test_folder_owner_or_mode_changed() -> None:
    [act] = host_level_diff(
        "n1", "debian", WANT, _facts(GOOD.model_copy(update={"agent_dir": DirFacts(uid=0, gid=0, mode="755")}))
    )
    assert (act.kind, act.subject, act.before, act.after) == ("update", "dir /srv/mcp", "0:0 755", "850:850 750")


def test_resolver_mechanism_mismatch_is_a_refusal() -> None:
    stub = GOOD.model_copy(update={"resolv_link": "../run/systemd/resolve/stub-resolv.conf"})
    assert _subjects(stub) == [("refuse", "resolvers")]
    resolved = HostLevelWant(
        "systemd-resolved", resolver_file(DNS.model_copy(update={"resolver": "systemd-resolved"})), None
    )
    assert _subjects(GOOD, resolved) == [("refuse", "resolvers")]
    assert _subjects(stub.model_copy(update={"resolved_conf": resolved.resolver_file.text}), resolved) == []


def test_nixos_and_old_facts_are_not_compared() -> None:
    assert _subjects(HostLevelFacts(), os="nixos") == []
    assert _subjects(None) == []


def test_probes_parse_back(tmp_path: Path) -> None:
    inp = ScriptInputs(users=("mcp",), uids=(850,), gids=(850,), agent_path="/srv/mcp/mcp-agent", agent_unit="u")
    names = {p.name for p in probes(inp)}
    assert {"resolv", "resolv-link", "resolved-conf", "agent-dir"} <= names
    framed = FramedOutput(
        values={
            "resolv": b"nameserver 1.1.1.1\n",
            "resolv-link": b"",
            "resolved-conf": b"absent\n",
            "agent-dir": b"850 850 750\n",
        }
    )
    seen = host_level_from(framed)
    assert seen == HostLevelFacts(resolv_conf="nameserver 1.1.1.1\n", agent_dir=DirFacts(uid=850, gid=850, mode="750"))
    assert host_level_from(FramedOutput(values={})) is None


def test_real_fleet_wants(tmp_path: Path) -> None:
    from tests.conftest import REPO

    loaded = load_fleet(REPO)
    svc = host_level_want(loaded.hosts["svc"], loaded.fleet)
    assert svc.agent_dir == WantedDir("/srv/mcp", 992, 991, "750")  # svc's own ids (pin exception)
    assert host_level_want(loaded.hosts["rift"], loaded.fleet).resolver_file.path.endswith(
        "resolved.conf.d/mcfleet.conf"
    )


def test_linger_is_planned_only_where_it_is_wanted() -> None:
    assert _subjects(GOOD) == []  # not wanted (the default): never shown
    want = HostLevelWant(WANT.resolver, WANT.resolver_file, WANT.agent_dir, linger=("mcp",))
    assert _subjects(GOOD, want) == [("create", "linger mcp")]
    assert _subjects(GOOD.model_copy(update={"linger": ["mcp"]}), want) == []
    framed = FramedOutput(values={"agent-dir": b"850 850 750\n", "linger": b"mcp\nkyle\n"})
    seen = host_level_from(framed)
    assert seen is not None and seen.linger == ["kyle", "mcp"]


RESOLVED_DNS = DNS.model_copy(update={"resolver": "systemd-resolved"})
STUB = "../run/systemd/resolve/stub-resolv.conf"
LINKS = (
    b"Global: 1.1.1.1 8.8.8.8\nLink 2 (eth0): 10.0.0.53 10.0.1.53\nLink 3 (wg0):\n"
    b"--\nGlobal:\nLink 2 (eth0): ~svc.example.test\nLink 3 (wg0):\n"
)


def _resolved_want() -> HostLevelWant:
    from mcfleet.fleet.resolvers import ZONE_UNIT_PATH, ResolverFile, zone_unit_text

    unit = zone_unit_text(RESOLVED_DNS, "svc.example.test")
    assert unit is not None
    return HostLevelWant(
        "systemd-resolved",
        resolver_file(RESOLVED_DNS),
        None,
        zone="svc.example.test",
        zone_servers=("10.0.0.53", "10.0.1.53"),
        zone_unit=ResolverFile(ZONE_UNIT_PATH, unit),
    )


def test_resolved_links_parse_and_route_the_zone() -> None:
    framed = FramedOutput(values={"agent-dir": b"850 850 750\n", "resolved-links": LINKS})
    seen = host_level_from(framed)
    assert seen is not None
    assert [(link.link, link.servers, link.domains) for link in seen.links] == [
        ("Link 2 (eth0)", ["10.0.0.53", "10.0.1.53"], ["~svc.example.test"])
    ]
    assert seen.routed("svc.example.test") == ["10.0.0.53", "10.0.1.53"]
    assert seen.routed("other.test") == []


def test_zone_routing_drift_shows_the_unit_and_the_live_routing() -> None:
    want = _resolved_want()
    assert want.zone_unit is not None
    links = host_level_from(FramedOutput(values={"agent-dir": b"850 850 750\n", "resolved-links": LINKS}))
    assert links is not None
    good = HostLevelFacts(
        resolv_link=STUB,
        resolved_conf=want.resolver_file.text,
        zone_unit=want.zone_unit.text,
        zone_unit_enabled="enabled",
        links=links.links,
    )
    assert _subjects(good, want) == []
    # a fresh node: no unit, nothing routed
    fresh = good.model_copy(update={"zone_unit": None, "zone_unit_enabled": "", "links": []})
    [act] = host_level_diff("n1", "debian", want, _facts(fresh))
    assert (act.kind, act.subject) == ("create", "dns zone svc.example.test")
    assert act.before == {"unit_sha256": None, "enabled": "absent", "routed": "nothing"}
    assert act.after["routed"] == "10.0.0.53 10.0.1.53"
    # the link's setting reset by hand (resolvectl revert eth0): the unit is there, the routing is not
    [act] = host_level_diff("n1", "debian", want, _facts(good.model_copy(update={"links": []})))
    assert act.kind == "update" and "resolved does not send svc.example.test to 10.0.0.53 10.0.1.53" in act.reason
    # the unit edited and disabled
    edited = good.model_copy(update={"zone_unit": want.zone_unit.text + "# x\n", "zone_unit_enabled": "disabled"})
    [act] = host_level_diff("n1", "debian", want, _facts(edited))
    assert "changed on the node" in act.reason and "disabled at boot" in act.reason
    assert act.before["unit_sha256"] != act.after["unit_sha256"]


def test_real_fleet_wants_linger_for_the_agent_user() -> None:
    from tests.conftest import REPO

    loaded = load_fleet(REPO)
    assert host_level_want(loaded.hosts["svc"], loaded.fleet).linger == ("mcp",)


def test_podman_socket_disabled_is_planned() -> None:
    want = HostLevelWant(WANT.resolver, WANT.resolver_file, WANT.agent_dir, podman_socket="mcp")
    assert _subjects(GOOD.model_copy(update={"podman_socket": False}), want) == [("create", "podman.socket mcp")]
    assert _subjects(GOOD.model_copy(update={"podman_socket": True}), want) == []
    assert _subjects(GOOD, want) == []  # an older facts script: unknown, not planned
    framed = FramedOutput(values={"agent-dir": b"850 850 750\n", "podman-socket": b"absent\n"})
    seen = host_level_from(framed)
    assert seen is not None and seen.podman_socket is False


def test_a_podman_socket_stopped_on_a_systemd_node_is_planned_to_start(tmp_path: Path) -> None:
    """Enabled but stopped (by hand): nothing listened on mcp's podman.sock, the agent could not reach
    podman, and the plan had no host change (provisioning starts it).  The probe reads the listening
    sockets (/proc/net/unix), as the socket file outlives a stopped unit; only a systemd node has it."""
    from mcfleet.observe.facts import AgentFacts
    from mcfleet.observe.hostlevel import _podman_socket_body

    want = HostLevelWant(WANT.resolver, WANT.resolver_file, WANT.agent_dir, podman_socket="mcp")
    stopped = GOOD.model_copy(update={"podman_socket": True, "podman_listening": False})
    systemd = AgentFacts(path="/srv/mcp/mcp-agent", systemd=True)
    facts = Facts(host="n1", host_level=stopped, agent=systemd)
    [act] = host_level_diff("n1", "debian", want, facts)
    assert (act.kind, act.subject, act.before, act.after) == ("update", "podman.socket mcp", "stopped", "listening")
    no_systemd = facts.model_copy(update={"agent": AgentFacts(path="/srv/mcp/mcp-agent", systemd=False)})
    assert host_level_diff("n1", "debian", want, no_systemd) == []  # nothing could start it there
    listening = stopped.model_copy(update={"podman_listening": True})
    assert host_level_diff("n1", "debian", want, facts.model_copy(update={"host_level": listening})) == []
    for text, enabled, on in (("enabled listening", True, True), ("enabled", True, False), ("absent", False, False)):
        framed = FramedOutput(values={"agent-dir": b"850 850 750\n", "podman-socket": text.encode() + b"\n"})
        seen = host_level_from(framed)
        assert seen is not None and (seen.podman_socket, seen.podman_listening) == (enabled, on), text
    # the probe itself: the home's owner names the runtime folder; a socket bound and listening there
    # counts, the same path left as a file after it closed does not
    home = tmp_path / "home"
    home.mkdir()
    (home / "link").symlink_to("/nonexistent")
    uid = 4242 if os.geteuid() == 0 else os.getuid()
    os.chown(home, uid, -1)
    folder = Path(f"/run/user/{uid}/podman")
    made = not folder.parent.exists()
    folder.mkdir(parents=True, exist_ok=True)
    body = _podman_socket_body(str(home / "link"), str(home))

    def probe() -> list[str]:
        return subprocess.run(["sh", "-c", body], capture_output=True, text=True, check=True).stdout.split()

    try:
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(folder / "podman.sock"))
            server.listen()
            assert probe() == ["enabled", "listening"]
            # the listener closed while a connection it accepted lives on (podman's worker can outlive the
            # stopped unit holding the agent's connection): /proc/net/unix still lists that path, but
            # nothing listens there
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(str(folder / "podman.sock"))
                accepted, _ = server.accept()
                with accepted:
                    server.close()
                    assert probe() == ["enabled"]
        assert (folder / "podman.sock").exists() and probe() == ["enabled"]
    finally:
        (folder / "podman.sock").unlink(missing_ok=True)
        shutil.rmtree(folder.parent if made else folder, ignore_errors=True)


def test_a_zone_unit_left_from_an_earlier_configuration_is_removed() -> None:
    left = GOOD.model_copy(update={"zone_unit": "# managed by mcfleet\n", "zone_unit_enabled": "enabled"})
    [act] = host_level_diff("n1", "debian", WANT, _facts(left))
    assert (act.kind, act.subject, act.after) == ("delete", "dns zone", None)
    assert act.before["enabled"] == "enabled"


# resolv.conf on a node with Debian's DHCP client: the hook that keeps a lease from rewriting it
HOOKED = HostLevelWant(
    "resolv.conf", resolver_file(DNS), WantedDir("/srv/mcp", 850, 850, "750"), dhclient_hook=dhclient_hook(DNS)
)


def test_a_node_with_dhclient_gets_the_hook_that_keeps_leases_off_resolv_conf() -> None:
    [act] = host_level_diff("n1", "debian", HOOKED, _facts(GOOD.model_copy(update={"dhclient": True})))
    assert (act.kind, act.subject, act.before) == ("create", "dhclient hook", None)
    assert act.after == ["make_resolv_conf() {", ":", "}"]
    assert "rewrites /etc/resolv.conf" in act.reason and DHCLIENT_HOOK in act.reason
    hooked = GOOD.model_copy(update={"dhclient": True, "dhclient_hook": DHCLIENT_HOOK_TEXT})
    assert _subjects(hooked, HOOKED) == []
    edited = hooked.model_copy(update={"dhclient_hook": "# emptied by hand\n"})
    [act] = host_level_diff("n1", "debian", HOOKED, _facts(edited))
    assert (act.kind, act.before) == ("update", []) and "changed on the node" in act.reason


def test_no_hook_without_dhclient_nor_from_an_older_facts_script() -> None:
    assert _subjects(GOOD.model_copy(update={"dhclient": False}), HOOKED) == []
    assert _subjects(GOOD, HOOKED) == []  # dhclient None: not looked for


@pytest.mark.parametrize(
    ("fields", "text", "subject"),
    [
        (("dhclient", "dhclient_hook"), DHCLIENT_HOOK_TEXT, "dhclient hook"),
        (("networkmanager", "networkmanager_dropin"), NM_DROPIN_TEXT, "networkmanager dns"),
    ],
)
def test_a_guard_left_from_resolv_conf_goes_with_systemd_resolved(
    fields: tuple[str, str], text: str, subject: str
) -> None:
    dns = DNS.model_copy(update={"resolver": "systemd-resolved"})
    assert dhclient_hook(dns) is None and networkmanager_dropin(dns) is None
    resolved = HostLevelWant("systemd-resolved", resolver_file(dns), None)
    installed, file = fields
    stub = GOOD.model_copy(
        update={
            "resolv_link": "../run/systemd/resolve/stub-resolv.conf",
            "resolved_conf": resolved.resolver_file.text,
            installed: True,
            file: text,
        }
    )
    [act] = host_level_diff("n1", "debian", resolved, _facts(stub))
    assert (act.kind, act.subject, act.after) == ("delete", subject, None)


def test_the_dhclient_probe_parses_back() -> None:
    base = {"resolv": b"", "resolv-link": b"", "resolved-conf": b"absent\n", "agent-dir": b"850 850 750\n"}
    present = host_level_from(
        FramedOutput(values={**base, "dhclient": f"dhclient\nfile\n{DHCLIENT_HOOK_TEXT}".encode()})
    )
    assert present is not None and (present.dhclient, present.dhclient_hook) == (True, DHCLIENT_HOOK_TEXT)
    absent = host_level_from(FramedOutput(values={**base, "dhclient": b"none\nabsent\n"}))
    assert absent is not None and (absent.dhclient, absent.dhclient_hook) == (False, None)
    older = host_level_from(FramedOutput(values=base))
    assert older is not None and (older.dhclient, older.dhclient_hook) == (None, None)


def test_the_real_fleets_resolv_conf_hosts_want_the_hook() -> None:
    from tests.conftest import REPO

    loaded = load_fleet(REPO)
    wants = {name: host_level_want(e, loaded.fleet).dhclient_hook for name, e in loaded.hosts.items()}
    assert wants["svc"] == ResolverFile(DHCLIENT_HOOK, DHCLIENT_HOOK_TEXT)  # Debian, resolv.conf
    assert wants["rift"] is None  # systemd-resolved


# resolv.conf on a node with dhcpcd: its enter hook skips dhcpcd's resolv.conf hook; that file may be the operator's
DHCPCD = HostLevelWant(
    "resolv.conf", resolver_file(DNS), WantedDir("/srv/mcp", 850, 850, "750"), dhcpcd_hook=dhcpcd_hook(DNS)
)
WITH_DHCPCD = GOOD.model_copy(update={"dhcpcd": True})


def test_a_node_with_dhcpcd_gets_the_enter_hook_that_skips_its_resolv_conf_hook() -> None:
    [act] = host_level_diff("n1", "debian", DHCPCD, _facts(WITH_DHCPCD))
    assert (act.kind, act.subject, act.before) == ("create", "dhcpcd hook", None)
    assert act.after == ['skip_hooks="$skip_hooks resolv.conf"']
    assert "dhcpcd rewrites /etc/resolv.conf" in act.reason and DHCPCD_HOOK in act.reason
    assert _subjects(WITH_DHCPCD.model_copy(update={"dhcpcd_hook": DHCPCD_HOOK_TEXT}), DHCPCD) == []
    # mcfleet's own hook (its first line) edited on the node: written again
    ours_edited = WITH_DHCPCD.model_copy(update={"dhcpcd_hook": DHCPCD_HOOK_TEXT.splitlines()[0] + "\n"})
    assert _subjects(ours_edited, DHCPCD) == [("update", "dhcpcd hook")]


def test_an_operators_enter_hook_is_never_replaced() -> None:
    theirs = WITH_DHCPCD.model_copy(update={"dhcpcd_hook": "# site: set the MTU\nifmtu=1400\n"})
    [act] = host_level_diff("n1", "debian", DHCPCD, _facts(theirs))
    assert (act.kind, act.subject) == ("refuse", "dhcpcd hook")
    assert act.before == ["ifmtu=1400"] and "is not mcfleet's" in act.reason
    assert act.hint is not None and 'skip_hooks="$skip_hooks resolv.conf"' in act.hint and "nohook" in act.hint
    # the operator turned the resolv.conf hook off already: in their enter hook, or in dhcpcd.conf
    skipping = theirs.model_copy(update={"dhcpcd_hook": 'ifmtu=1400\nskip_hooks="$skip_hooks resolv.conf"\n'})
    assert _subjects(skipping, DHCPCD) == []
    assert _subjects(theirs.model_copy(update={"dhcpcd_nohook": True}), DHCPCD) == []


def test_no_dhcpcd_hook_without_dhcpcd_and_mcfleets_own_goes_with_systemd_resolved() -> None:
    assert _subjects(GOOD.model_copy(update={"dhcpcd": False}), DHCPCD) == []
    assert _subjects(GOOD, DHCPCD) == []  # dhcpcd None: not looked for (an older facts script)
    dns = DNS.model_copy(update={"resolver": "systemd-resolved"})
    assert dhcpcd_hook(dns) is None
    resolved = HostLevelWant("systemd-resolved", resolver_file(dns), None)
    stub = WITH_DHCPCD.model_copy(
        update={"resolv_link": "../run/systemd/resolve/stub-resolv.conf", "resolved_conf": resolved.resolver_file.text}
    )
    left = stub.model_copy(update={"dhcpcd_hook": DHCPCD_HOOK_TEXT})
    [act] = host_level_diff("n1", "debian", resolved, _facts(left))
    assert (act.kind, act.subject, act.after) == ("delete", "dhcpcd hook", None)
    assert _subjects(stub.model_copy(update={"dhcpcd_hook": "ifmtu=1400\n"}), resolved) == []  # the operator's stays


def test_the_dhcpcd_probe_parses_back() -> None:
    base = {"resolv": b"", "resolv-link": b"", "resolved-conf": b"absent\n", "agent-dir": b"850 850 750\n"}
    present = host_level_from(
        FramedOutput(values={**base, "dhcpcd": f"dhcpcd\nhook\nfile\n{DHCPCD_HOOK_TEXT}".encode()})
    )
    assert present is not None
    assert (present.dhcpcd, present.dhcpcd_hook, present.dhcpcd_nohook) == (True, DHCPCD_HOOK_TEXT, False)
    nohook = host_level_from(FramedOutput(values={**base, "dhcpcd": b"dhcpcd\nnohook\nabsent\n"}))
    assert nohook is not None and (nohook.dhcpcd, nohook.dhcpcd_hook, nohook.dhcpcd_nohook) == (True, None, True)
    older = host_level_from(FramedOutput(values=base))
    assert older is not None and (older.dhcpcd, older.dhcpcd_hook) == (None, None)


def test_the_nohook_line_is_found_as_dhcpcd_reads_it(tmp_path: Path) -> None:
    """The one pattern the probe and the provisioning script give `grep -E`: dhcpcd.conf's own syntax."""
    from mcfleet.fleet.resolvers import DHCPCD_NOHOOK_RE

    def found(line: str) -> bool:
        conf = tmp_path / "dhcpcd.conf"
        conf.write_text(f"option rapid_commit\n{line}\n")
        return subprocess.run(["grep", "-qsE", DHCPCD_NOHOOK_RE, str(conf)], check=False).returncode == 0

    assert found("nohook resolv.conf") and found("  nohook\tresolv.conf") and found("nohook 30-hostname,resolv.conf")
    assert not found("# nohook resolv.conf") and not found("nohook 30-hostname") and not found("hook resolv.conf")


# resolv.conf on a node with NetworkManager: the drop-in (dns=none) that keeps it from rewriting that file
NM = HostLevelWant(
    "resolv.conf",
    resolver_file(DNS),
    WantedDir("/srv/mcp", 850, 850, "750"),
    networkmanager_dropin=networkmanager_dropin(DNS),
)


def test_a_node_with_networkmanager_gets_the_drop_in_that_keeps_it_off_resolv_conf() -> None:
    [act] = host_level_diff("n1", "debian", NM, _facts(GOOD.model_copy(update={"networkmanager": True})))
    assert (act.kind, act.subject, act.before) == ("create", "networkmanager dns", None)
    assert act.after == ["[main]", "dns=none"]
    assert "NetworkManager rewrites /etc/resolv.conf" in act.reason and NM_DROPIN in act.reason
    kept = GOOD.model_copy(update={"networkmanager": True, "networkmanager_dropin": NM_DROPIN_TEXT})
    assert _subjects(kept, NM) == []
    edited = kept.model_copy(update={"networkmanager_dropin": "[main]\ndns=default\n"})
    [act] = host_level_diff("n1", "debian", NM, _facts(edited))
    assert (act.kind, act.before) == ("update", ["[main]", "dns=default"]) and "changed on the node" in act.reason
    # not installed, or an older facts script: nothing
    assert _subjects(GOOD.model_copy(update={"networkmanager": False}), NM) == []
    assert _subjects(GOOD, NM) == []


def test_the_networkmanager_probe_parses_back() -> None:
    base = {"resolv": b"", "resolv-link": b"", "resolved-conf": b"absent\n", "agent-dir": b"850 850 750\n"}
    present = host_level_from(
        FramedOutput(values={**base, "networkmanager": f"installed\nfile\n{NM_DROPIN_TEXT}".encode()})
    )
    assert present is not None
    assert (present.networkmanager, present.networkmanager_dropin) == (True, NM_DROPIN_TEXT)
    absent = host_level_from(FramedOutput(values={**base, "networkmanager": b"none\nabsent\n"}))
    assert absent is not None and (absent.networkmanager, absent.networkmanager_dropin) == (False, None)
    older = host_level_from(FramedOutput(values=base))
    assert older is not None and (older.networkmanager, older.networkmanager_dropin) == (None, None)
