"""Host-level facts mcfleet manages beyond the pinned ids: the resolver file and the agent's folder.

Read in the same facts batch (one round trip) by the probes below; the host kind compares
them with what the files want (`kinds/host_level.py`), so a hand edit on the node shows in the
plan as `~` with the old and new values instead of being rewritten silently by apply.

Values: the file mcfleet writes for the resolvers (`/etc/resolv.conf` is read once, by the
`resolv` probe; `resolved-conf` reads the systemd-resolved drop-in, telling a missing file
from an empty one), where `/etc/resolv.conf` links to (systemd-resolved's stub or a plain
file), owner, group and mode of the agent's folder (`/srv/mcp`), and which users linger.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from mcfleet.fleet.resolvers import RESOLVED_DROPIN

if TYPE_CHECKING:
    from mcfleet.observe.parse import FramedOutput
    from mcfleet.observe.script import Probe, ScriptInputs

ABSENT = "absent"


class DirFacts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    uid: int
    gid: int
    mode: str = Field(description="octal permission bits, e.g. 750")


class HostLevelFacts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    resolv_conf: str | None = Field(default=None, description="/etc/resolv.conf; None when absent")
    resolv_link: str | None = Field(default=None, description="where /etc/resolv.conf links to; None: a plain file")
    resolved_conf: str | None = Field(default=None, description="mcfleet's systemd-resolved drop-in; None when absent")
    agent_dir: DirFacts | None = Field(default=None, description="the agent's folder; None when absent")
    linger: list[str] = Field(default_factory=list, description="users with linger (/var/lib/systemd/linger)")


def _file(path: str) -> str:
    q = shlex.quote(path)
    return f"if [ -f {q} ]; then echo file; cat {q}; else echo {ABSENT}; fi"


def host_level_probes(inp: ScriptInputs) -> list[Probe]:
    from mcfleet.observe.script import Probe

    agent_dir = shlex.quote(inp.agent_path.rsplit("/", 1)[0] or "/")
    return [
        Probe("resolv-link", "readlink /etc/resolv.conf", "/etc/resolv.conf"),
        Probe("resolved-conf", _file(RESOLVED_DROPIN), RESOLVED_DROPIN),
        Probe("agent-dir", f"stat -c '%u %g %a' {agent_dir}", inp.agent_path.rsplit("/", 1)[0]),
        Probe("linger", "ls -1 /var/lib/systemd/linger", "/var/lib/systemd/linger"),
    ]


def _content(text: str) -> str | None:
    head, _, rest = text.partition("\n")
    return rest if head == "file" else None


def _dir(text: str) -> DirFacts | None:
    parts = text.split()
    if len(parts) != 3 or not (parts[0].isdigit() and parts[1].isdigit()) or not parts[2].isdigit():
        return None
    return DirFacts(uid=int(parts[0]), gid=int(parts[1]), mode=parts[2])


def host_level_from(v: FramedOutput) -> HostLevelFacts | None:
    """None when the node ran a facts script without these probes (an older mcfleet)."""
    if "agent-dir" not in v.values:
        return None
    return HostLevelFacts(
        resolv_conf=v.text("resolv") or None,  # the `resolv` probe's file (empty: absent or empty)
        resolv_link=v.text("resolv-link").strip() or None,
        resolved_conf=_content(v.text("resolved-conf")),
        agent_dir=_dir(v.text("agent-dir")),
        linger=sorted(v.text("linger").split()),
    )
