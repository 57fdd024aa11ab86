"""The deadman ("magic rollback", after deploy-rs): a node reverts by itself unless confirmed.

Before the agent is restarted, apply arms a node-side timer that runs the rollback
script `templates/rollback.sh` after `deadline` seconds.  The script acts only if
its token file still exists; apply deletes the token and stops the timer once its
health check passed (`disarm`).  If the orchestrator vanishes in between (killed,
network gone), nobody deletes the token and the node puts back `.prev`.

The timer is a transient `systemd-run --on-active` unit: it survives the SSH
session and the orchestrator, and needs nothing installed beyond systemd.
"""

from __future__ import annotations

import secrets
import shlex
from dataclasses import dataclass
from importlib import resources

from mcfleet.apply.nodeio import Node, write_text
from mcfleet.apply.probe import agent_dir, unit_path
from mcfleet.fleet.models import Host

ROLLBACK_SCRIPT = "mcfleet-rollback.sh"


def template(name: str) -> str:
    return resources.files("mcfleet.apply").joinpath("templates", name).read_text()


def render(text: str, values: dict[str, str]) -> str:
    """Fill `@NAME@` placeholders; every value is shell-quoted where the template needs it."""
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


def rollback_script(host: Host, deadline: int) -> str:
    q = shlex.quote
    return render(
        template("rollback.sh"),
        {
            "BIN": q(host.agent.path),
            "UNIT_FILE": q(unit_path(host)),
            "UNIT": q(host.agent.unit),
            "DIR": agent_dir(host),
            "DEADLINE": str(deadline),
        },
    )


@dataclass(frozen=True)
class Deadman:
    token: str  # path of the token file on the node
    unit: str  # the transient systemd timer/service name
    deadline: int


async def arm(node: Node, host: Host, deadline: int) -> Deadman:
    """Install the rollback script and start the countdown; returns what `disarm` needs."""
    directory = agent_dir(host)
    script = f"{directory}/{ROLLBACK_SCRIPT}"
    ident = secrets.token_hex(4)
    token = f"{directory}/.mcfleet-deadman.{ident}"
    await write_text(node, script, rollback_script(host, deadline), mode="0700")
    q = shlex.quote
    unit = f"mcfleet-deadman-{ident}"
    cmd = (
        f"echo armed > {q(token)} && systemd-run --quiet --unit={unit} --on-active={deadline}s "
        f"--timer-property=AccuracySec=1s /bin/sh {q(script)} {q(token)}"
    )
    res = await node.run(cmd, timeout=30)
    res.check("arming the rollback deadman", node.name)
    return Deadman(token, unit, deadline)


async def disarm(node: Node, deadman: Deadman) -> None:
    """Confirm: the token goes first (so a timer firing right now does nothing), then the timer."""
    # (a rollback already running is left to finish: interrupting it could leave the unit stopped)
    cmd = f"rm -f {shlex.quote(deadman.token)}; systemctl stop {deadman.unit}.timer 2>/dev/null; true"
    res = await node.run(cmd, timeout=30)
    res.check("confirming the activation (disarming the deadman)", node.name)
