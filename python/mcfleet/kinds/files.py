"""The files kind: each service's declared files in its folder `/srv/<svc>/` (fleet/files.py).

read: the facts batch's `files` probe (owner, mode, sha256 and text of every declared path).
diff: a declared file the node lacks is `+`; one whose content differs is `~` with a unified
diff of the text (old from the node, new as rendered); owner or mode drift is `~` too; a file the
manifest records and no service declares any more is `-` (removed after the containers).
apply: each file is written as root through the node helper (`apply.nodeio.put_file`: no link
followed, an exclusive temp file beside it, the hash checked, then renamed), content on stdin
(never in a process's arguments); the files phase runs before deploy, so new containers start
with their files.  A service that already runs and whose files changed is restarted
(`Restart` on the agent: its containers only); when it does not get healthy on them, its
previous files (copied to root's store before the write) are put back and it is restarted on
those, so a config it rejects fails the apply without leaving it down.  A service whose containers
the deploy recreates (a new image or container spec) is not restarted here: its new containers start
on the new files in the deploy, and when its stage does not get healthy (the agent puts the old
containers back) its previous files go back too and it is restarted on them.
record: every declared file as written (path -> service, sha256, owner, mode); a removed one leaves.
A secret's record also keeps the sha256 of the encrypted file it came from and of the content
written, so a plan made by an operator who cannot decrypt it (no identity, not a recipient) finds
an unchanged secret unchanged, and refuses only one it would have to write.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mcfleet.apply.nodeio import KEPT_PREFIX, drop_staging, helper, make_staging, put_file, store_of, upload
from mcfleet.errors import ApplyError, McfleetError
from mcfleet.fleet.desired import DesiredHost
from mcfleet.fleet.files import DesiredFile, sub_folders
from mcfleet.fleet.load import LoadedFleet
from mcfleet.kinds.base import PLANNED, ApplyContext, NoRead, Outcome
from mcfleet.observe.facts import Facts
from mcfleet.observe.files import FileFacts
from mcfleet.observe.manifest import Manifest, ManifestFile
from mcfleet.phase import Phase
from mcfleet.plan.model import RECORD_ONLY, Action

if TYPE_CHECKING:
    from mcfleet.agent.client import AgentClient

DIFF_LINES = 200  # lines of unified diff a plan shows per file
AGENT_TIMEOUT = 120.0


def unified_diff(path: str, old: str, new: str) -> list[str]:
    import difflib  # only when a declared file's text differs

    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), f"{path} (node)", path, lineterm=""))
    if len(lines) > DIFF_LINES:
        lines = [*lines[:DIFF_LINES], f"… {len(lines) - DIFF_LINES} more lines"]
    return lines


def content_sha(want: DesiredFile) -> str:
    """The sha256 the node's file must have (a secret's is computed here, never put in the plan)."""
    return want.sha256 or hashlib.sha256((want.content or "").encode()).hexdigest()


def _sealed_unchanged(want: DesiredFile, have: FileFacts | None, had: ManifestFile | None) -> str | None:
    """A secret this operator cannot decrypt: None when the node's file is what mcfleet last wrote from the
    same encrypted file, with the owner and mode declared (nothing to do, no content needed); else what
    differs, for the refusal."""
    if have is None or not have.present:
        return "the node does not have it"
    if had is None or had.sealed is None or had.written is None:  # e.g. written by an earlier mcfleet
        return f"the manifest does not record which secrets/{want.secret}.age it was written from"
    if want.sealed != had.sealed:
        return f"secrets/{want.secret}.age changed since it was written (a new value, or a rekey)"
    if have.sha256 != had.written:
        return "the node's file is not the one mcfleet wrote"
    if f"{have.uid}:{have.gid}" != want.owner or int((have.mode or "0"), 8) != int(want.mode, 8):
        return "its owner or mode differ"
    return None


def _file_action(
    d: DesiredHost, want: DesiredFile, have: FileFacts | None, had: ManifestFile | None = None
) -> Action | None:
    subject = f"file {want.path}"
    after: dict[str, Any] = {"service": want.service, "owner": want.owner, "mode": want.mode}
    after.update({"secret": want.secret} if want.secret else {"sha256": want.sha256})
    if want.error is not None:
        differs = _sealed_unchanged(want, have, had) if want.sealed else None
        if want.sealed and differs is None:
            return None  # unchanged since mcfleet wrote it: apply has nothing to write
        return Action(host=d.name, phase=Phase.files, kind="refuse", subject=subject,
                      reason=f"{differs}, and {want.error}" if differs else want.error,
                      hint=f"mcfleet secret show {want.secret} must work for you")  # fmt: skip
    if have is None or not have.present:
        return Action(host=d.name, phase=Phase.files, kind="create", subject=subject, after=after,
                      reason=f"declared by service {want.service}" + (" (secret)" if want.secret else ""))  # fmt: skip
    before: dict[str, Any] = {
        "service": want.service,
        "owner": f"{have.uid}:{have.gid}",
        "mode": (have.mode or "").zfill(4),
    }
    before.update({"secret": want.secret} if want.secret else {"sha256": have.sha256})
    if want.secret and have.sha256 != content_sha(want):
        return Action(host=d.name, phase=Phase.files, kind="update", subject=subject, before=before, after=after,
                      reason="secret changed")  # fmt: skip
    if not want.secret and have.sha256 != want.sha256:
        if want.data is not None:  # binary: no text diff
            return Action(host=d.name, phase=Phase.files, kind="update", subject=subject, before=before,
                          after=after, reason=f"content changed (binary, {len(want.data)} bytes)")  # fmt: skip
        diff = unified_diff(want.path, have.text, want.content or "") if have.text is not None else []
        return Action(host=d.name, phase=Phase.files, kind="update", subject=subject, before=before,
                      after={**after, "diff": diff}, reason="content changed")  # fmt: skip
    if before["owner"] != want.owner or int(before["mode"] or "0", 8) != int(want.mode, 8):
        return Action(host=d.name, phase=Phase.files, kind="update", subject=subject, before=before,
                      after=after, reason="owner or mode differ")  # fmt: skip
    if want.secret and had is not None and (had.sealed, had.written) != (want.sealed, content_sha(want)):
        # what an operator without the identity compares with (_sealed_unchanged) must be today's
        why = (f"secrets/{want.secret}.age was encrypted again since it was written (a rekey)" if had.sealed else
               f"the manifest does not record which secrets/{want.secret}.age it was written from")  # fmt: skip
        return Action(host=d.name, phase=Phase.files, kind="update", subject=subject, before=before,
                      after={**after, RECORD_ONLY: True},
                      reason=f"{why}; the node's file holds its value: recorded, not written")  # fmt: skip
    return None


def record_only(action: Action) -> bool:
    """A secret's file the node already holds: only the manifest's record of it changes."""
    return isinstance(action.after, dict) and action.after.get(RECORD_ONLY) is True


def _recorded(f: DesiredFile) -> ManifestFile:
    if f.secret is None:
        return ManifestFile(service=f.service, sha256=f.sha256, owner=f.owner, mode=f.mode)
    return ManifestFile(service=f.service, sha256=f"secret {f.secret}", owner=f.owner, mode=f.mode,
                        sealed=f.sealed, written=content_sha(f))  # fmt: skip


async def put_binary(node: Any, want: DesiredFile) -> None:
    """A binary file: uploaded by SFTP as the login user into a private folder in its home, then
    copied into place by root's helper (its sha256 checked), as the agent binary is."""
    import tempfile
    from pathlib import Path

    assert want.data is not None
    staging = await make_staging(node)
    try:
        with tempfile.TemporaryDirectory(prefix="mcfleet-file-") as tmp:
            local = Path(tmp) / "data"
            local.write_bytes(want.data)
            await upload(node, local, f"{staging}/data")
        await put_file(node, want.path, source=f"{staging}/data", mode=want.mode, owner=want.owner, sha=want.sha256)
    finally:
        await drop_staging(node, staging)


@dataclass(frozen=True)
class Kept:
    """A file's content before this apply (`copy`, in root's store), with the owner and mode it had."""

    copy: str
    owner: str
    mode: str


DEFERRED = "files_kept_for_deploy"  # ctx.data: path -> Kept, of services the deploy recreates
NOT_KEPT = "files_not_kept"  # ctx.data: the changed files of a running service with no copy kept


def recreated_by_deploy(ctx: ApplyContext) -> set[str]:
    """The services this apply's deploy makes new containers for (a changed image or container spec): they
    start on their new files there, so the files phase does not restart them first.  Restarted here, the old
    image would meet the new files, and a config only the new version reads would fail the files phase
    before the deploy could run (an image bump that needs a new config could then never be applied)."""
    planned: list[Action] = ctx.data.get(PLANNED) or []
    return {
        a.subject.removeprefix("service ")
        for a in planned
        if a.phase == Phase.deploy
        and (a.kind == "replace" or (a.kind == "update" and isinstance(a.before, dict)
                                     and isinstance(a.after, dict) and a.before.get("images") != a.after.get("images")))
    }  # fmt: skip


async def _put_back(ctx: ApplyContext, kept: dict[str, Kept], services: set[str]) -> list[str]:
    """The kept files of `services` written back as they were (content, owner, mode), through root's helper;
    they are no longer recorded as written by this apply."""
    back = sorted(p for p in kept if ctx.desired.files[p].service in services)
    for path in back:
        k = kept[path]
        await put_file(ctx.node, path, source=k.copy, mode=k.mode, owner=k.owner)
    ctx.data["files"] = [p for p in ctx.data.get("files", []) if p not in back]
    return back


async def put_back_deferred(ctx: ApplyContext, services: set[str], *, restart: AgentClient | None = None) -> str:
    """After a deploy whose stage failed (its old containers put back by the agent) or that never ran for
    these services: their previous files back, and with `restart` (the agent client) each restarted on
    them; what was done, for the deploy's message."""
    back = await _put_back(ctx, ctx.data.get(DEFERRED) or {}, services)
    said = f"; their previous files put back ({', '.join(back)})" if back else ""
    if restart is None:
        return said
    for name in sorted({ctx.desired.files[p].service for p in back}):
        answer = await restart.restart(name)
        if not answer.ok:
            said += f"; {name} did not get healthy on them either: {answer.error}"
    return said


async def drop_deferred(ctx: ApplyContext) -> None:
    """The deploy is over: the copies it might have needed go."""
    await _drop(ctx, list((ctx.data.pop(DEFERRED, None) or {}).values()))


async def _drop(ctx: ApplyContext, kept: list[Kept]) -> None:
    if kept:
        await ctx.node.run(helper("rm", *(k.copy for k in kept)), timeout=120)


def _restarting(ctx: ApplyContext, actions: list[Action]) -> list[Action]:
    """The changes to files of services that already run: apply restarts those services."""
    return [
        a for a in actions
        if a.kind == "update" and not record_only(a)
        and ctx.desired.files[a.subject.removeprefix("file ")].service in ctx.manifest.services
    ]  # fmt: skip


class FilesKind(NoRead):
    name = "files"
    phase = Phase.files
    records_desired_set = False  # it records what its apply did

    def blocked(self, loaded: LoadedFleet) -> str | None:
        return None

    def diff(self, d: DesiredHost, f: Facts, m: Manifest, *, now: datetime) -> list[Action]:
        if f.files is None:  # not asked (an older facts script)
            return []
        seen = {x.path: x for x in f.files}
        acts = [_file_action(d, want, seen.get(path), m.files.get(path)) for path, want in sorted(d.files.items())]
        acts = [  # apply restarts a running service whose files change: the plan says so
            a.model_copy(update={"reason": f"{a.reason}; {svc} restarts on it"})
            if a is not None and a.kind == "update" and not record_only(a)
            and (svc := d.files[a.subject.removeprefix("file ")].service) in m.services else a
            for a in acts
        ]  # fmt: skip
        for path, had in sorted(m.files.items()):  # recorded as written by mcfleet, no longer declared
            if path not in d.files:
                before = {"service": had.service, "owner": had.owner, "mode": had.mode}
                why = "no longer declared in the files: removed from the node"
                if had.service in d.inactive:
                    why = f'"active": false in {had.service}.json: removed from the node while it is kept stopped'
                acts.append(Action(host=d.name, phase=Phase.files, kind="delete", subject=f"file {path}",
                                   before=before, reason=why))  # fmt: skip
        return [a for a in acts if a is not None]

    async def apply(self, ctx: ApplyContext, actions: list[Action]) -> Outcome:
        doomed = [a.subject.removeprefix("file ") for a in actions if a.kind == "delete"]
        if doomed:  # the removal pass (after the containers): root's helper unlinks, never following a link
            res = await ctx.node.run(helper("rm", *doomed), timeout=120)
            if not res.ok:
                raise ApplyError(f"removing {', '.join(doomed)}: {(res.stderr or res.stdout).strip()[-300:]}",
                                 location=ctx.entry.host.name)  # fmt: skip
            ctx.data["files_removed"] = [*ctx.data.get("files_removed", []), *doomed]
            actions = [a for a in actions if a.kind != "delete"]
            if not actions:
                return Outcome("changed", f"removed {', '.join(doomed)}")
        kept = await self._keep_previous(ctx, actions)
        deferred = recreated_by_deploy(ctx)
        # the copies of a service the deploy recreates wait for its outcome (`put_back_deferred`)
        ctx.data[DEFERRED] = {p: k for p, k in kept.items() if ctx.desired.files[p].service in deferred}
        try:
            outcome = await self._write(ctx, actions, kept, deferred)
        except BaseException:
            # the host's apply ends here, its deploy never runs: those services' old containers keep running,
            # so their previous files go back (they would meet the new ones at their next start otherwise)
            with contextlib.suppress(McfleetError, OSError):
                await put_back_deferred(ctx, deferred)
            await _drop(ctx, list(kept.values()))
            ctx.data.pop(DEFERRED, None)
            raise
        await _drop(ctx, [k for p, k in kept.items() if p not in ctx.data[DEFERRED]])
        if lost := ctx.data.get(NOT_KEPT):
            outcome = Outcome(outcome.status, f"{outcome.message}; no copy kept of {', '.join(lost)} (a link, not a "
                              "plain file, or one with a second name: never read as root), so a service that does "
                              "not get healthy on the new one cannot have it back")  # fmt: skip
        return outcome

    async def _write(self, ctx: ApplyContext, actions: list[Action], kept: dict[str, Kept], deferred: set[str]
                     ) -> Outcome:  # fmt: skip
        written: list[str] = []
        made: set[str] = set()
        recorded = [a.subject.removeprefix("file ") for a in actions if record_only(a)]
        for a in actions:
            if record_only(a):
                continue
            want = ctx.desired.files[a.subject.removeprefix("file ")]
            if want.content is None and want.data is None:  # planned as a refusal; apply never runs a plan with one
                raise ApplyError(f"{want.path}: {want.error}", location=ctx.entry.host.name)
            await self._folders(ctx, want, made)
            if want.data is not None:
                await put_binary(ctx.node, want)
                written.append(want.path)
                continue
            await put_file(ctx.node, want.path, text=want.content, mode=want.mode, owner=want.owner,
                           sha=content_sha(want))  # fmt: skip
            written.append(want.path)
        ctx.data["files"] = written
        restarted = await self._restart(ctx, actions, kept, deferred)
        note = f"; restarted {', '.join(restarted)}" if restarted else ""
        note += f"; recorded {', '.join(recorded)} (already on the node)" if recorded else ""
        return Outcome("changed" if written or recorded else "unchanged",
                       f"wrote {', '.join(written) or 'nothing'}{note}")  # fmt: skip

    async def _folders(self, ctx: ApplyContext, want: DesiredFile, made: set[str]) -> None:
        """The sub-folders between /srv/<svc> and the file, made by root's helper (no link followed),
        owned like the file (the first one there), 0750."""
        for folder in sub_folders(want):
            if folder in made:
                continue
            res = await ctx.node.run(helper("mkdir", folder, "0750", want.owner), timeout=60)
            if not res.ok:
                raise ApplyError(f"making {folder}: {(res.stderr or res.stdout).strip()[-300:]}",
                                 location=ctx.entry.host.name)  # fmt: skip
            made.add(folder)

    async def _keep_previous(self, ctx: ApplyContext, actions: list[Action]) -> dict[str, Kept]:
        """A copy, in root's store, of each file about to change under a service that runs: put back if the
        service does not get healthy on the new ones (a config it rejects must not leave it down)."""
        kept: dict[str, Kept] = {}
        for a in _restarting(ctx, actions):
            path = a.subject.removeprefix("file ")
            copy = f"{store_of(ctx.node)}/{KEPT_PREFIX}{hashlib.sha256(path.encode()).hexdigest()[:16]}"
            before = a.before if isinstance(a.before, dict) else {}
            try:
                await put_file(ctx.node, copy, source=path, mode="0600", owner="0:0")
            except ApplyError:  # a link planted there (replaced, never read), not a file, or one with two names
                ctx.data[NOT_KEPT] = [*ctx.data.get(NOT_KEPT, []), path]
                continue
            kept[path] = Kept(copy, str(before.get("owner") or "0:0"), str(before.get("mode") or "0600"))
        return kept

    async def _restart(self, ctx: ApplyContext, actions: list[Action], kept: dict[str, Kept], deferred: set[str]
                       ) -> list[str]:  # fmt: skip
        """Restart the services that already run and whose content changed (a new one starts with its files;
        one the deploy recreates, there).  One that does not get healthy gets its previous files back and is
        restarted on them."""
        from mcfleet.agent.client import AgentClient  # grpc + protobuf: only where an RPC is made
        from mcfleet.kinds.service import agent_socket

        running = sorted(
            {ctx.desired.files[a.subject.removeprefix("file ")].service for a in _restarting(ctx, actions)} - deferred
        )
        if not running:
            return []
        failures: list[str] = []
        target = await agent_socket(ctx.node, ctx.entry.host.agent.socket)
        async with AgentClient(target, timeout=AGENT_TIMEOUT) as client:
            for name in running:
                answer = await client.restart(name)
                if answer.ok:
                    continue
                back = await _put_back(ctx, kept, {name})
                again = await client.restart(name)
                them = "it" if len(back) == 1 else "them"
                now = (f"its previous {', '.join(back)} put back, and {name} runs on {them}" if again.ok else
                       f"its previous {', '.join(back)} put back, and {name} did not get healthy on {them} "
                       f"either: {again.error}")  # fmt: skip
                failures.append(f"{name} did not get healthy after its files changed: {answer.error}; {now} "
                                f"(see `mcfleet logs {ctx.entry.host.name} {name}`)")  # fmt: skip
        if failures:
            raise ApplyError("; ".join(failures), location=ctx.entry.host.name)
        return running

    def record(self, m: Manifest, ctx: ApplyContext, actions: list[Action]) -> Manifest:
        """The declared files written now or before; a file no longer declared stays until it is removed.
        A change this apply planned and did not leave in place (not written, or put back when its service
        did not get healthy on it) keeps its earlier entry: the node holds the earlier content."""
        written, removed = set(ctx.data.get("files", [])), set(ctx.data.get("files_removed", []))
        not_done = {a.subject.removeprefix("file ") for a in actions if not record_only(a)} - written
        files = {
            # kept: not written now, or a secret this operator cannot decrypt (unchanged, as the plan found)
            p: m.files[p] if p in m.files and (p in not_done or (f.secret and f.content is None)) else _recorded(f)
            for p, f in ctx.desired.files.items()
            if p in written or p in m.files
        }  # fmt: skip
        files.update({p: had for p, had in m.files.items() if p not in ctx.desired.files and p not in removed})
        if files == m.files:
            return m
        return m.model_copy(update={"files": dict(sorted(files.items()))})
