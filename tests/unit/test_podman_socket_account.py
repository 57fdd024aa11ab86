"""The podman-socket probe looks for the agent account's socket under that account's uid (`id -u`), not
under the uid that owns its home: a home given to root by hand left mcp's socket serving at
/run/user/850 while the probe looked in /run/user/0 and the plan said `~ podman.socket mcp stopped`."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from pathlib import Path

from mcfleet.observe.hostlevel import _podman_socket_body, host_level_probes
from mcfleet.observe.script import ScriptInputs

HOME_OWNER = 4243  # an id no account has: the home's owner, never the account's uid


def test_the_socket_is_looked_for_under_the_accounts_uid_whoever_owns_its_home(tmp_path: Path) -> None:
    account = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.getuid())
    home = tmp_path / "home"
    home.mkdir()
    (home / "link").symlink_to("/nonexistent")
    if os.geteuid() == 0:
        os.chown(home, HOME_OWNER, -1)
    folder = Path(f"/run/user/{account.pw_uid}/podman")
    made = not folder.parent.exists()
    folder.mkdir(parents=True, exist_ok=True)
    body = _podman_socket_body(str(home / "link"), str(home), account.pw_name)

    def probe(text: str = body) -> list[str]:
        return subprocess.run(["sh", "-c", text], capture_output=True, text=True, check=True).stdout.split()

    try:
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(folder / "podman.sock"))
            server.listen()
            assert probe() == ["enabled", "listening"]
            # an account the node does not have: no user manager of its, nothing of its listens
            assert probe(_podman_socket_body(str(home / "link"), str(home), "no-such-account-h34")) == ["enabled"]
        assert probe() == ["enabled"]
    finally:
        (folder / "podman.sock").unlink(missing_ok=True)
        shutil.rmtree(folder.parent if made else folder, ignore_errors=True)


def test_the_facts_script_names_the_agents_account() -> None:
    inp = ScriptInputs(("mcp",), (850,), (850,), "/srv/mcp/mcp-agent", "mcp-agent.service", agent_user="mcp")
    [body] = [p.body for p in host_level_probes(inp) if p.name == "podman-socket"]
    assert "id -u mcp" in body and "stat -c %u" not in body
