"""Provisioning enables mcp's podman.socket in mcp's home without following mcp's links (full lab nodes).

Root never trusts what the `mcp` account can write: mcp owns /srv/mcp, so it can make any folder on
`.config/systemd/user/sockets.target.wants` a link.  Root's `mkdir -p` and `ln -sfn` on that path
followed such a link and made root-owned folders and a podman.socket link wherever mcp pointed it
(reproduced: /etc/sockets.target.wants/podman.socket).  The account now makes its own folders and
link, so a link leads only where mcp can write anyway.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.apply_lab import MakeNodes, agent_bundle_fixture, cli, make_nodes_fixture  # noqa: F401

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]

HOME = "/srv/mcp"
WANTS = ".config/systemd/user/sockets.target.wants"
UNIT = "/usr/lib/systemd/user/podman.socket"


@pytest.mark.parametrize("linked", [".config", ".config/systemd", ".config/systemd/user", WANTS])
def test_provision_follows_no_link_mcp_put_on_its_podman_socket_path(
    make_nodes: MakeNodes, agent_bundle: Path, linked: str
) -> None:
    fleet = make_nodes(1, "plink")
    name, root = fleet.names[0], str(fleet.fleet_dir)
    first = cli("provision", name, "--root", root, "--bundle", str(agent_bundle), "--json")
    assert first.code == 0, first.why
    assert "podman.socket enabled for mcp" in first.phase(name, "provision")["message"]

    # A folder of root's that mcp cannot write, and mcp's link to it in place of one of its folders
    # (its wants link gone with it, so the next provision enables the socket again).
    scratch = fleet.sh(name, "d=$(mktemp -d /var/tmp/scratch.XXXXXX) && chmod 0755 $d && echo $d").stdout.strip()
    assert fleet.sh(name, f"stat -c '%U %a' {scratch}").stdout.strip() == "root 755"
    fleet.sh(name, f"cd / && runuser -u mcp -- sh -c 'cd {HOME} && rm -rf {linked} && ln -s {scratch} {linked}'")

    again = cli("provision", name, "--root", root, "--bundle", str(agent_bundle), "--json")
    made = fleet.sh(name, f"find {scratch} -mindepth 1").stdout.split()
    assert made == [], f"root followed mcp's link {HOME}/{linked} -> {scratch} and made {made}"
    # refused, saying what to do: the account cannot make its link through a folder it cannot write
    assert again.code == 1, again.why
    said = again.phase(name, "provision")["message"]
    assert f"podman.socket not enabled: mcp cannot make {HOME}/{WANTS}/podman.socket" in said, said
    assert "a folder on that path may be a link out of its home" in said, said

    # mcp removes its link: the next provision makes the folders and the link, all mcp's own
    fleet.sh(name, f"cd / && runuser -u mcp -- rm {HOME}/{linked}")
    fixed = cli("provision", name, "--root", root, "--bundle", str(agent_bundle), "--json")
    assert fixed.code == 0, fixed.why
    assert "podman.socket enabled for mcp" in fixed.phase(name, "provision")["message"]
    assert fleet.sh(name, f"readlink {HOME}/{WANTS}/podman.socket").stdout.strip() == UNIT
    owners = fleet.sh(name, f"find {HOME}/.config -printf '%u %p\\n'").stdout.splitlines()
    assert owners and all(line.startswith("mcp ") for line in owners), owners
    assert fleet.sh(name, f"find {scratch} -mindepth 1").stdout.split() == []
    # and it is what mcp's user manager reads: the socket is enabled and listens
    state = "cd / && runuser -u mcp -- env XDG_RUNTIME_DIR=/run/user/850 systemctl --user is-enabled podman.socket"
    assert fleet.sh(name, state).stdout.strip() == "enabled"
    assert fleet.sh(name, "stat -c '%U %F' /run/user/850/podman/podman.sock").stdout.strip() == "mcp socket"


def test_provision_makes_the_missing_home_of_an_older_mcp_account_and_its_socket_link_as_mcp(
    make_nodes: MakeNodes, agent_bundle: Path
) -> None:
    """An mcp account made before mcfleet, with its pinned ids and a home never created: the home is
    made (mcp's, 0750) and podman.socket enabled in it, by mcp."""
    fleet = make_nodes(1, "phome")
    name, root = fleet.names[0], str(fleet.fleet_dir)
    fleet.sh(name, "groupadd -r -g 850 mcp && useradd -r -u 850 -g 850 -d /home/mcp -M -s /usr/sbin/nologin mcp")
    assert fleet.sh(name, "test -e /home/mcp", check=False).returncode == 1

    run = cli("provision", name, "--root", root, "--bundle", str(agent_bundle), "--json")
    assert run.code == 0, run.why
    said = run.phase(name, "provision")["message"]
    assert "/home/mcp made (the home of mcp), owned by mcp, mode 0750" in said, said
    assert "podman.socket enabled for mcp" in said, said
    assert fleet.sh(name, "stat -c '%U %G %a' /home/mcp").stdout.strip() == "mcp mcp 750"
    assert fleet.sh(name, f"readlink /home/mcp/{WANTS}/podman.socket").stdout.strip() == UNIT
    owners = fleet.sh(name, "find /home/mcp/.config -printf '%u %p\\n'").stdout.splitlines()
    assert owners and all(line.startswith("mcp ") for line in owners), owners
