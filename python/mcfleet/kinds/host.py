"""The host kind: the machine itself (OS, arch), its pinned users and subordinate ids,
and the folders mcfleet manages (the agent's, and each service's volumes under /srv/).

diff: a wrong OS/arch or a pinned UID/GID held by someone else is a refusal (a live
UID is never changed); a missing user or subid range is created; a missing folder is
created, one with another owner, group or mode is corrected.  apply: the provisioning
script on Debian (users, subids, resolvers), then the folders (NixOS nodes get all of
these from their configuration, so apply reports that blocked).  record: the users'
ids as the node has them, read back after provisioning.
"""

from __future__ import annotations

import json
import shlex
from datetime import datetime

from mcfleet.fleet.desired import DesiredHost, DesiredUser
from mcfleet.fleet.load import LoadedFleet
from mcfleet.kinds.base import ApplyContext, NoRead, Outcome
from mcfleet.kinds.host_level import host_level_diff
from mcfleet.observe.facts import Facts
from mcfleet.observe.manifest import Manifest, ManifestUser
from mcfleet.phase import Phase
from mcfleet.plan.model import Action

UID_HINT = (
    "never change a rootless podman user's UID; declare a pin_exception for this host or free the UID on the node"
)


class HostKind(NoRead):
    name = "host"
    phase = Phase.host
    records_desired_set = False  # it records what its apply did

    def blocked(self, loaded: LoadedFleet) -> str | None:
        return None

    def diff(self, d: DesiredHost, f: Facts, m: Manifest, *, now: datetime) -> list[Action]:
        acts = _users(d, f) + _dirs(d, f)
        if d.host_level is not None:  # resolver file, agent folder: drift shows as ~ (kinds/host_level.py)
            acts += host_level_diff(d.name, d.os, d.host_level, f)
        return acts

    def platform(self, d: DesiredHost, f: Facts) -> list[Action]:
        """Refusals when the node is not the machine the files describe (checked before every kind)."""
        return _platform(d, f)

    async def apply(self, ctx: ApplyContext, actions: list[Action]) -> Outcome:
        """The folders (after the pipeline's provisioner made the users: apply.provision)."""
        want = {d.path: d for d in ctx.desired.dirs}
        todo = [want[a.subject.removeprefix("dir ")] for a in actions if a.subject.removeprefix("dir ") in want]
        if not todo:
            return Outcome("unchanged", "")
        # root's node helper: a folder under one the agent's account owns (/srv/db/sub) could be swapped for a
        # link to /etc, which a shell `chown` would follow and hand that account
        from mcfleet.apply.nodeio import ensure_store, helper

        await ensure_store(ctx.node)  # apply's node lock installed it: a no-op then
        triples = [x for d in todo for x in (d.path, d.mode, f"{d.owner}:{d.group}")]
        res = await ctx.node.run(helper("mkdir", *triples), timeout=60)
        res.check("creating the service folders", ctx.entry.host.name)
        return Outcome("changed", ", ".join(f"{d.path} ({d.owner}:{d.group} {d.mode})" for d in todo))

    def record(self, m: Manifest, ctx: ApplyContext, actions: list[Action]) -> Manifest:
        users: dict[str, tuple[int, int]] | None = ctx.data.get("users")
        if users is None:
            return m
        return m.model_copy(update={"users": {n: ManifestUser(uid=u, gid=g) for n, (u, g) in sorted(users.items())}})


async def read_users(ctx: ApplyContext) -> dict[str, tuple[int, int]]:
    """The pinned users' (uid, gid) as the node has them now (users absent on the node are left out)."""
    names = [u.name for u in ctx.desired.users]
    if not names:
        return {}
    script = "; ".join(f"getent passwd {shlex.quote(n)} || true" for n in names)
    res = await ctx.node.run(script, timeout=30)
    found: dict[str, tuple[int, int]] = {}
    for line in res.stdout.splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[0] in names and parts[2].isdecimal() and parts[3].isdecimal():
            found[parts[0]] = (int(parts[2]), int(parts[3]))
    return found


def _platform(d: DesiredHost, f: Facts) -> list[Action]:
    acts = []
    if f.os_id != d.os:
        acts.append(
            Action(
                host=d.name,
                phase=Phase.host,
                kind="refuse",
                subject="os",
                before=f.os_id,
                after=d.os,
                reason=f"host {d.name} runs {f.os_pretty or f.os_id or 'an unknown OS'} but host.json says {d.os}",
                hint="fix `os` in host.json, or check that the address reaches the right machine",
            )
        )
    if f.arch != d.arch:
        acts.append(
            Action(
                host=d.name,
                phase=Phase.host,
                kind="refuse",
                subject="arch",
                before=f.arch_raw,
                after=d.arch,
                reason=f"host {d.name} is {f.arch_raw or 'of unknown arch'} (uname -m) but host.json says {d.arch}",
                hint="fix `arch` in host.json: a binary for the wrong arch would not start",
            )
        )
    return acts


def _refuse_user(d: DesiredHost, u: DesiredUser, reason: str, before: object, hint: str = UID_HINT) -> Action:
    return Action(
        host=d.name,
        phase=Phase.host,
        kind="refuse",
        subject=f"user {u.name}",
        before=before,
        after={"uid": u.uid, "gid": u.gid},
        reason=f"{reason}: {hint}",
        hint=hint,
    )


def _exception_hint(u: DesiredUser, node_ids: tuple[int, int]) -> str:
    """host.json's own ids for the user (its pin_exception) are not the node's: the file is what is wrong."""
    return (
        f"host.json's pin_exception for {u.name} says {u.uid}:{u.gid}, but the node's account is "
        f"{node_ids[0]}:{node_ids[1]}: set users.{u.name}.uid and gid in host.json to the node's"
    )


def _users(d: DesiredHost, f: Facts) -> list[Action]:
    acts: list[Action] = []
    for u in d.users:
        clash = _id_clash(d, f, u)
        if clash is not None:
            acts.append(clash)
            continue
        acct = f.account(u.name)
        pinned_by = "host.json pins" if u.exception else "the fleet pins"
        if acct is not None:
            hint = _exception_hint(u, (acct.uid, acct.gid)) if u.exception else UID_HINT
            if acct.uid != u.uid:
                reason = f"user {u.name} on {d.name} has UID {acct.uid} but {pinned_by} UID {u.uid}"
                acts.append(_refuse_user(d, u, reason, {"uid": acct.uid, "gid": acct.gid}, hint))
            elif acct.gid != u.gid:
                reason = f"user {u.name} on {d.name} has GID {acct.gid} but {pinned_by} GID {u.gid}"
                acts.append(_refuse_user(d, u, reason, {"uid": acct.uid, "gid": acct.gid}, hint))
            else:
                acts += _subids(d, f, u)
            continue
        holder = f.account_by_uid(u.uid)
        group = f.group_by_gid(u.gid)
        if holder is not None:
            reason = (
                f"UID {u.uid} pinned for user {u.name} on {d.name} is held by account {holder.name} (UID {holder.uid})"
            )
            acts.append(_refuse_user(d, u, reason, {"holder": holder.name, "uid": holder.uid}))
        elif group is not None and group.name != u.name:
            reason = f"GID {u.gid} pinned for user {u.name} on {d.name} is held by group {group.name} (GID {group.gid})"
            acts.append(_refuse_user(d, u, reason, {"holder": group.name, "gid": group.gid}))
        else:
            how = "created by the NixOS configuration" if d.os == "nixos" else "useradd with the pinned ids"
            after = {"uid": u.uid, "gid": u.gid}
            if u.subuid:
                after["subuid"] = u.subuid.start
            acts.append(
                Action(host=d.name, phase=Phase.host, kind="create", subject=f"user {u.name}", after=after, reason=how)
            )
            acts += _auto_subids(d, f, u)
    return acts


def _id_clash(d: DesiredHost, f: Facts, u: DesiredUser) -> Action | None:
    """A refusal when another account holds the pinned UID, another group the pinned GID, or the user's own
    group has another GID (read from getent and from /etc/passwd and /etc/group: a second holder shows)."""
    others = [a for a in f.accounts_with_uid(u.uid) if a.name != u.name]
    if others:
        names = ", ".join(a.name for a in others)
        also = "also " if any(a.name == u.name for a in f.accounts_with_uid(u.uid)) else ""
        reason = f"UID {u.uid} pinned for user {u.name} on {d.name} is {also}held by account {names} (UID {u.uid})"
        return _refuse_user(d, u, reason, {"holder": names, "uid": u.uid})
    groups = [g for g in f.groups_with_gid(u.gid) if g.name != u.name]
    if groups:
        names = ", ".join(g.name for g in groups)
        reason = f"GID {u.gid} pinned for user {u.name} on {d.name} is held by group {names} (GID {u.gid})"
        return _refuse_user(d, u, reason, {"holder": names, "gid": u.gid})
    own = [g for g in [*f.group_file, *f.groups] if g.name == u.name and g.gid != u.gid]
    if own and f.account(u.name) is None:  # an existing user's GID is compared with the pin below
        reason = f"group {u.name} on {d.name} has GID {own[0].gid} but the pin is GID {u.gid}"
        return _refuse_user(d, u, reason, {"group": u.name, "gid": own[0].gid})
    return None


# Debian provisioning gives the agent's account the next free range of this size when host.json names
# none and the node has none (apply/templates/provision.sh): rootless podman maps a container's users
# other than root onto it, and without one such an image cannot be pulled.
AUTO_SUBID_COUNT = 65536


def _subids(d: DesiredHost, f: Facts, u: DesiredUser) -> list[Action]:
    acts = []
    for label, want, have in (("subuid", u.subuid, f.subuid.get(u.name)), ("subgid", u.subgid, f.subgid.get(u.name))):
        if want is None:
            continue
        wanted = {"start": want.start, "count": want.count}
        if not have:
            acts.append(
                Action(
                    host=d.name,
                    phase=Phase.host,
                    kind="create",
                    subject=f"{label} {u.name}",
                    after=wanted,
                    reason=f"no /etc/{label} range",
                )
            )
        elif not any(r.start == want.start and r.count == want.count for r in have):
            acts.append(_move_subids(d, f, u, label, have=[r.model_dump() for r in have], wanted=wanted))
    return acts + _auto_subids(d, f, u)


def _auto_subids(d: DesiredHost, f: Facts, u: DesiredUser) -> list[Action]:
    """`+ subuid mcp` for the agent's account on Debian where host.json names no range and the node has none."""
    if d.os != "debian" or u.name != d.agent.user:
        return []
    missing = [
        label
        for label, want, have in (
            ("subuid", u.subuid, f.subuid.get(u.name)),
            ("subgid", u.subgid, f.subgid.get(u.name)),
        )
        if want is None and not have
    ]
    return [
        Action(
            host=d.name,
            phase=Phase.host,
            kind="create",
            subject=f"{label} {u.name}",
            after={"count": AUTO_SUBID_COUNT},
            reason=f"no /etc/{label} range, and host.json names none: rootless podman needs one for images with "
            f"users other than root, so apply adds the next free {AUTO_SUBID_COUNT} ids",
        )
        for label in missing
    ]


def _move_subids(
    d: DesiredHost, f: Facts, u: DesiredUser, label: str, *, have: list[dict[str, int]], wanted: dict[str, int]
) -> Action:
    """A range that differs: moved (`~`) on Debian when nothing lives in the node's ranges, else refused.

    After a move and `podman system migrate`, what the old range owns (image layers, files under /srv
    of container users other than root) shows as nobody (65534) in the containers and cannot be written;
    `podman system reset` run after the move cannot delete it.  So a range moves only while the user's
    podman storage is empty and no file under /srv is owned by it; the provisioning script checks the
    same (one shell function, observe/hostlevel.SUBID_USE_SH) before it rewrites /etc/subuid.
    """
    use = f.host_level.subid_use.get(u.name) if f.host_level is not None else None
    base = dict(host=d.name, phase=Phase.host, subject=f"{label} {u.name}", before=have, after=wanted)
    if d.os == "debian" and use is not None and use.empty:
        return Action(
            **base,
            kind="update",
            reason=f"{label} of {u.name} on {d.name} differs from host.json; nothing lives in the node's range "
            f"(no image layer or container in {u.name}'s podman storage, no file under /srv owned by it), so apply "
            "moves it and runs `podman system migrate`",
        )
    found = (
        f"{u.name}'s podman storage holds {use.layers} image layers and {use.containers} containers"
        + (", and files under /srv are owned by ids of the range" if use.files else "")
        if use is not None
        else "the node's storage was not read (an older facts script, or NixOS)"
    )
    hint = (
        f"keep the node's range: set users.{u.name}.{label} in host.json to {json.dumps(have[0]) if have else 'it'}; "
        "or, to move "
        f"it: stop {u.name}'s services (mcfleet agent stop {d.name}), run `podman system reset -f` as {u.name} while "
        f"the old range is still in /etc/{label} (after the move it cannot delete the old files), re-own what the "
        "old range owns under /srv/<service>, then apply (images are pulled and containers recreated)"
    )
    return Action(
        **base,
        kind="refuse",
        reason=f"{label} of {u.name} on {d.name} differs from host.json and {found}: after a move they show as "
        "nobody (65534) inside the containers and cannot be written",
        hint=hint,
    )


def _dirs(d: DesiredHost, f: Facts) -> list[Action]:
    if f.dirs is None:  # not asked
        return []
    seen = {x.path: x for x in f.dirs}
    acts = []
    for want in d.dirs:
        have = seen.get(want.path)
        after = {"owner": want.owner, "group": want.group, "mode": want.mode}
        if have is None or not have.present:
            acts.append(
                Action(host=d.name, phase=Phase.host, kind="create", subject=f"dir {want.path}", after=after,
                       reason="a folder the agent or a service's volume needs")
            )  # fmt: skip
            continue
        before = {"owner": have.owner, "group": have.group, "mode": have.mode.zfill(4)}
        if (have.owner, have.group) != (want.owner, want.group) or int(have.mode or "0", 8) != int(want.mode, 8):
            acts.append(
                Action(host=d.name, phase=Phase.host, kind="update", subject=f"dir {want.path}", before=before,
                       after=after, reason="owner, group or mode differ")
            )  # fmt: skip
    return acts
