"""A container podman keeps restarting: the one rule the agent, `plan` and `status` share.

A managed container runs under podman's `unless-stopped` policy, so a process that dies is
started again at once (a program that exits at start: ~16 times a second).  podman counts those
restarts in `RestartCount`, and a deliberate `podman start` (the agent's) sets the count back to
0.  So "restarted several times since the agent last started it, the last time a moment ago"
tells a crash loop from one crash weeks ago (count 1, started long ago) and from a restart the
agent made (count 0).  The state alone cannot: between two runs the container reads "running"
one moment and "stopped" the next, so a plan once said "no changes" and the next second
"hello is stopped".

The agent reports the count and the seconds since the last start by its own clock (the
client's may differ from the node's), and recreates a looping container from its image: a
fresh container drops whatever its own writable layer holds that makes it fail.
"""

from __future__ import annotations

# Restarts by podman's policy since the agent's last start; fewer is a crash or two, not a loop.
CRASH_LOOP_RESTARTS = 3
# A container last started longer ago than this has been running since: it is not looping now.
CRASH_LOOP_WITHIN_S = 60.0


def is_crash_loop(restarts: int, up_s: float | None) -> bool:
    """`restarts`: podman's count since the last deliberate start; `up_s`: seconds since its last
    start (None: never started)."""
    return restarts >= CRASH_LOOP_RESTARTS and up_s is not None and up_s < CRASH_LOOP_WITHIN_S


def crash_loop_text(restarts: int, exit_code: int) -> str:
    code = f", last exit code {exit_code}" if exit_code else ""
    return f"crash loop: podman restarted it {restarts} times{code}"
