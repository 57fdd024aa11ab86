"""Unpack the pushed agent bundle on the node before the agent is restarted.

The bundle is a `--venv` PEX: its first start as the agent's user unpacks it into a venv
under that user's `~/.cache/pex` (several seconds of CPU: 22 MB of wheels), every later
start reuses that venv.  Running it once right after the push as an interpreter that only
imports the agent's modules (`PEX_INTERPRETER=1 -c 'import …'`: the agent does not run)
moves that cost out of activation, where it would delay the health check while the old
agent is already stopped and the deadman armed.

The venv is made by the agent's own user with the same HOME systemd gives the unit (its
passwd home), so it lands where the unit looks.  A failure here is not an apply failure:
the agent then unpacks at its first start, and the health check judges that.
"""

from __future__ import annotations

import contextlib
import shlex
import time

from mcfleet.errors import McfleetError
from mcfleet.fleet.models import Host
from mcfleet.transport.base import Node

PREWARM_TIMEOUT_S = 300.0
# Importing the agent's modules (their import has no side effect: `main()` is what starts the
# agent) writes the bytecode of the agent and its libraries into the venv, which the first
# start would otherwise compile: 3.0 -> 1.3 s of the agent's CPU on a lab node.  The agent
# serves before it imports the rest of itself (mcfleet.agent.server.LOAD_ORDER, which a unit test
# holds these to): those modules are named here, or the first start compiles them (measured: the
# load ended 2.1 s after the start instead of ~1 s on three fresh lab nodes).
WARM_MODULES = (
    "mcfleet.agent.main",
    "mcfleet.agent.server",
    "mcfleet.agent.podman_ops",
    "mcfleet.agent.reconcile",
    "mcfleet.agent.registry",
)
WARM_IMPORTS = "import " + ", ".join(WARM_MODULES)


def prewarm_script(host: Host) -> str:
    """Root shell: run the installed bundle once as the agent's user, unpack only (exit 0 without that user)."""
    user, binary = shlex.quote(host.agent.user), shlex.quote(host.agent.path)
    return "\n".join(
        [
            f'home=$(getent passwd {user} | cut -d: -f6) && [ -n "$home" ] || exit 0',
            f'exec runuser -u {user} -- env HOME="$home" PEX_INTERPRETER=1 {binary} -c {shlex.quote(WARM_IMPORTS)}',
        ]
    )


async def prewarm(node: Node, host: Host) -> float | None:
    """Seconds the unpacking took, or None when it did not succeed (the agent unpacks at start then)."""
    started = time.monotonic()
    with contextlib.suppress(McfleetError):
        res = await node.run(prewarm_script(host), timeout=PREWARM_TIMEOUT_S)
        if res.exit_status == 0:
            return time.monotonic() - started
    return None
