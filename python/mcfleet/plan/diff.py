"""The pure diff: desired (from the files) vs observed (facts) -> actions for one host.

No I/O here; `now` is passed in so cert expiry is testable.  Each area is a
small function; the data-driven cases in tests/data/plan/ pin their behaviour.
"""

from __future__ import annotations

from datetime import datetime

from mcfleet.observe.facts import Facts
from mcfleet.observe.manifest import MANIFEST_PATH, Manifest
from mcfleet.plan.desired import DesiredHost, DesiredUser
from mcfleet.plan.diff_resources import certs_diff, dns_diff, routes_diff, services_diff
from mcfleet.plan.model import Action

UID_HINT = (
    "never change a rootless podman user's UID; declare a pin_exception for this host or free the UID on the node"
)


def diff_host(d: DesiredHost, f: Facts, *, now: datetime) -> list[Action]:
    platform = _platform(d, f)
    if platform:  # wrong machine (or wrong file): planning anything else would be guesswork
        return platform
    manifest = f.manifest or Manifest()
    acts = _users(d, f) + _agent(d, f, manifest) + services_diff(d, f, manifest)
    acts += certs_diff(d, f, manifest, now) + dns_diff(d, f, manifest) + routes_diff(d, f, manifest)
    if any(a.kind != "refuse" for a in acts) or f.manifest_error:
        reason = f.manifest_error or "record what mcfleet manages on the host"
        kind = "create" if f.manifest is None and not f.manifest_error else "update"
        acts.append(
            Action(host=d.name, phase="manifest", kind=kind, subject="manifest", after=MANIFEST_PATH, reason=reason)
        )
    return acts


def _platform(d: DesiredHost, f: Facts) -> list[Action]:
    acts = []
    if f.os_id != d.os:
        acts.append(
            Action(
                host=d.name,
                phase="host",
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
                phase="host",
                kind="refuse",
                subject="arch",
                before=f.arch_raw,
                after=d.arch,
                reason=f"host {d.name} is {f.arch_raw or 'of unknown arch'} (uname -m) but host.json says {d.arch}",
                hint="fix `arch` in host.json: a binary for the wrong arch would not start",
            )
        )
    return acts


def _refuse_user(d: DesiredHost, u: DesiredUser, reason: str, before: object) -> Action:
    return Action(
        host=d.name,
        phase="host",
        kind="refuse",
        subject=f"user {u.name}",
        before=before,
        after={"uid": u.uid, "gid": u.gid},
        reason=f"{reason}: {UID_HINT}",
        hint=UID_HINT,
    )


def _users(d: DesiredHost, f: Facts) -> list[Action]:
    acts: list[Action] = []
    for u in d.users:
        acct = f.account(u.name)
        pinned_by = "host.json pins" if u.exception else "the fleet pins"
        if acct is not None:
            if acct.uid != u.uid:
                reason = f"user {u.name} on {d.name} has UID {acct.uid} but {pinned_by} UID {u.uid}"
                acts.append(_refuse_user(d, u, reason, {"uid": acct.uid, "gid": acct.gid}))
            elif acct.gid != u.gid:
                reason = f"user {u.name} on {d.name} has GID {acct.gid} but {pinned_by} GID {u.gid}"
                acts.append(_refuse_user(d, u, reason, {"uid": acct.uid, "gid": acct.gid}))
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
                Action(host=d.name, phase="host", kind="create", subject=f"user {u.name}", after=after, reason=how)
            )
    return acts


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
                    phase="host",
                    kind="create",
                    subject=f"{label} {u.name}",
                    after=wanted,
                    reason=f"no /etc/{label} range",
                )
            )
        elif not any(r.start == want.start and r.count == want.count for r in have):
            acts.append(
                Action(
                    host=d.name,
                    phase="host",
                    kind="refuse",
                    subject=f"{label} {u.name}",
                    before=[r.model_dump() for r in have],
                    after=wanted,
                    reason=f"{label} of {u.name} on {d.name} differs from host.json (podman storage uses it)",
                    hint=f"make users.{u.name}.{label} in host.json match the node; never move a live user's range",
                )
            )
    return acts


def _agent(d: DesiredHost, f: Facts, manifest: Manifest) -> list[Action]:
    seen = f.agent
    if seen is None:
        return []
    recorded = manifest.agent.sha256 if manifest.agent else None
    want = d.agent_sha256 or recorded
    after = {"path": d.agent_path, "sha256": want}
    if not seen.present:
        return [
            Action(
                host=d.name,
                phase="agent",
                kind="create",
                subject="agent",
                after=after,
                reason=f"no agent binary at {d.agent_path}",
            )
        ]
    before = {"path": d.agent_path, "sha256": seen.sha256, "unit": seen.unit_active}
    if want is None:
        reason = "the agent on the node is not recorded in the manifest"
    elif seen.sha256 != want:
        reason = (
            "a new agent bundle" if d.agent_sha256 else "the binary on the node differs from the one applied (drift)"
        )
    elif seen.unit_active not in (None, "active"):
        reason = f"{d.agent_unit} is {seen.unit_active}"
    else:
        return []
    return [
        Action(host=d.name, phase="agent", kind="update", subject="agent", before=before, after=after, reason=reason)
    ]
