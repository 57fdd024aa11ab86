"""Changes that would hand files to ids the plan refuses to make real.

A refused user (the node's account has other ids than the declared ones, or another account holds
the declared ids) keeps what the node has.  A file or folder the plan would chown to the declared
ids would then belong to an id that is not that user on this node: nobody, or another account
(a service's secret handed to it), and the service could no longer read it.  Such a change is
refused with the user: `--override` of the user alone cannot let it through.
"""

from __future__ import annotations

from mcfleet.phase import Phase
from mcfleet.plan.model import Action


def _declared_owner(refusal: Action) -> str | None:
    after = refusal.after
    if not isinstance(after, dict) or not {"uid", "gid"} <= after.keys():
        return None
    return f"{after['uid']}:{after['gid']}"


def _owner(action: Action) -> str | None:
    """The "uid:gid" a file or folder change gives its path."""
    after = action.after
    if action.phase == Phase.files and isinstance(after, dict):
        owner = after.get("owner")
        return owner if isinstance(owner, str) else None
    if action.phase == Phase.host and action.subject.startswith("dir ") and isinstance(after, str):
        return after.split(" ", 1)[0]  # "uid:gid mode"
    return None


def refuse_changes_to_refused_ids(acts: list[Action]) -> list[Action]:
    """`acts` with each create or update that gives a path to a refused user's declared ids refused too."""
    refused = {
        owner: a
        for a in acts
        if a.kind == "refuse" and a.phase == Phase.host and a.subject.startswith("user ")
        if (owner := _declared_owner(a)) is not None
    }
    if not refused:
        return acts
    out = []
    for a in acts:
        user = refused.get(_owner(a) or "") if a.kind in ("create", "update") else None
        if user is None:
            out.append(a)
            continue
        name = user.subject.removeprefix("user ")
        why = user.reason.removesuffix(f": {user.hint}") if user.hint else user.reason
        out.append(
            a.held_with(
                user,
                f"owner {_owner(a)} is {name}'s ids in the files, refused with `{user.subject}` ({why}): "
                f"it would not be {name}'s on this node",
            )
        )
    return out
