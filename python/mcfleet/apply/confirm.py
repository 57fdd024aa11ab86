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

from mcfleet.apply.nodeio import STORE, write_text_script
from mcfleet.apply.probe import unit_path
from mcfleet.fleet.models import Host
from mcfleet.transport.base import Node

# In root's own store (root-owned 0700), never in the agent's folder: root runs it.
ROLLBACK_SCRIPT = f"{STORE}/rollback.sh"


def template(name: str) -> str:
    return resources.files("mcfleet.apply").joinpath("templates", name).read_text()


def fill_template(text: str, values: dict[str, str]) -> str:
    """Fill `@NAME@` placeholders with values the caller has shell-quoted (or that are digits)."""
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


def rollback_script(host: Host, deadline: int) -> str:
    q = shlex.quote
    return fill_template(
        template("rollback.sh"),
        {
            "BIN": q(host.agent.path),
            "UNIT_FILE": q(unit_path(host)),
            "UNIT": q(host.agent.unit),
            "STORE": q(STORE),
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
    script = ROLLBACK_SCRIPT
    ident = secrets.token_hex(4)
    token = f"{STORE}/deadman-token.{ident}"
    q = shlex.quote
    unit = f"mcfleet-deadman-{ident}"
    # one round trip: the script is written (atomically; a failure exits before the next line),
    # then the token and the timer
    cmd = (
        f"{write_text_script(script, '0700')}\n"
        f"echo armed > {q(token)} && systemd-run --quiet --unit={unit} --on-active={deadline}s "
        f"--timer-property=AccuracySec=1s /bin/sh {q(script)} {q(token)}"
    )
    res = await node.run(cmd, input=rollback_script(host, deadline), timeout=30)
    res.check("arming the rollback deadman", node.name)
    return Deadman(token, unit, deadline)


async def disarm(node: Node, deadman: Deadman) -> None:
    """Confirm: the tokens go first (so a timer firing right now does nothing), then the timers.

    Every pending deadman of this node is cancelled, not only ours: the node now runs an
    agent confirmed healthy, so an older apply's countdown (one that was killed, or one a
    re-run superseded) must not roll it back later.
    """
    # (a rollback already running is left to finish: interrupting it could leave the unit stopped)
    store = shlex.quote(STORE)
    cmd = (
        f"rm -f {shlex.quote(deadman.token)} {store}/deadman-token.*; "
        "for t in $(systemctl list-units --plain --no-legend 'mcfleet-deadman-*.timer' | cut -d' ' -f1); do "
        'systemctl stop "$t" 2>/dev/null; done; '
        f"systemctl stop {deadman.unit}.timer 2>/dev/null; true"
    )
    res = await node.run(cmd, timeout=30)
    res.check("confirming the activation (disarming the deadman)", node.name)
