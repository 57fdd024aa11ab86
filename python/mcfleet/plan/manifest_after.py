"""Whether applying a host's actions would change its manifest: the plan lists `~ manifest` only then.

Apply writes the manifest as its last step, and only when its content changes (`unchanged: as
applied` otherwise); each kind's `record` makes its part from what the apply did.  Here the same
`record` functions run on what a fully successful apply of these actions hands them: the values the
pipeline and the kinds' apply leave for them (`ctx.data`).  So a drift repair that changes nothing
recorded (a stopped container started, a resolver file or dhclient hook written again, a route a
proxy lost added back, a certificate file reissued at the same path) gets no manifest line, and
`status` does not count one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from mcfleet.fleet.desired import DesiredHost
from mcfleet.fleet.load import LoadedFleet
from mcfleet.kinds import HEAD_PHASES, KINDS, ApplyContext, ResourceKind
from mcfleet.kinds.files import record_only
from mcfleet.observe.facts import Facts
from mcfleet.phase import Phase
from mcfleet.plan.model import Action

if TYPE_CHECKING:
    from mcfleet.transport.base import Node


def manifest_changes(
    loaded: LoadedFleet, d: DesiredHost, f: Facts, actions: Sequence[Action], kinds: Sequence[ResourceKind] = KINDS
) -> bool:
    """True when a successful apply of `actions` (refusals left out) would write a manifest other than
    the node's: always when the node has none, or when the actions move a service (the apply then
    works from the desired host without it)."""
    if f.manifest is None:
        return True
    doing = [a for a in actions if a.kind != "refuse"]
    if any(a.kind == "move" for a in doing):
        return True
    data = _apply_data(d, f, doing)
    if data is None:
        return True
    # no kind's record touches the node: it makes the manifest's part from ctx.desired and ctx.data
    ctx = ApplyContext(loaded, loaded.hosts[d.name], cast("Node", None), d, f.manifest, data)
    recorded = [k for k in KINDS if k.phase in HEAD_PHASES or k in kinds]  # as apply records them
    after = f.manifest
    for kind in recorded:
        after = kind.record(after, ctx, [a for a in doing if a.phase == kind.phase])
    return after.content() != f.manifest.content()


def _apply_data(d: DesiredHost, f: Facts, doing: list[Action]) -> dict[str, Any] | None:
    """What the pipeline and the kinds' apply hand to `record` after a fully successful apply of
    `doing`; None when it cannot be known before (an agent build not made yet)."""
    by_phase: dict[Phase, list[Action]] = {}
    for a in doing:
        by_phase.setdefault(a.phase, []).append(a)
    # the users are read back from the node: the ids it has, and the pinned ids of a user apply creates
    created = {a.subject.removeprefix("user ") for a in by_phase.get(Phase.host, []) if a.subject.startswith("user ")}
    users = {}
    for u in d.users:
        account = f.account(u.name)
        if u.name in created:
            users[u.name] = (u.uid, u.gid)
        elif account is not None:
            users[u.name] = (account.uid, account.gid)
    data: dict[str, Any] = {"users": users}
    # activation runs: the hash that answers is the build's (a NixOS switch records no agent of its own)
    if Phase.agent in by_phase and d.os != "nixos":
        if d.agent.sha256 is None:
            return None
        data["agent_sha256"] = d.agent.sha256  # its version: the manifest's when the binary is the same
    deploy = by_phase.get(Phase.deploy, [])
    if any(a.kind != "delete" for a in deploy):  # a deploy sends every declared service, stage by stage
        data["deployed"] = [s.name for s in d.services.values() if s.spec is not None]
    if any(a.kind == "delete" for a in deploy):
        data["pruned"] = True
    files = by_phase.get(Phase.files, [])
    data["files"] = [a.subject.removeprefix("file ") for a in files if a.kind != "delete" and not record_only(a)]
    data["files_removed"] = [a.subject.removeprefix("file ") for a in files if a.kind == "delete"]
    return data
