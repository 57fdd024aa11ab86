"""`mcfleet status`'s NOTE says why DRIFT is "refused", or which backend the plan could not read
(was: "refused" and "-", with nothing to say what to look at)."""

from __future__ import annotations

from mcfleet.cli.commands_status import HostStatus, status_note
from mcfleet.plan.model import Action, Plan, Unobserved

LONG = "no operator identity to decrypt secrets: /root/.config/mcfleet/age.key: No such file or directory (set it)"


def refuse(subject: str, reason: str) -> Action:
    return Action(host="full1", phase="files", kind="refuse", subject=subject, reason=reason)


def test_the_first_refusal_is_named_shortened_with_how_many_more() -> None:
    actions = [refuse("file /srv/sni/tls.key", LONG), refuse("file /srv/db/key", "x")]
    note = status_note("full1", actions, Plan(hosts=["full1"]))
    assert note is not None and note.startswith("file /srv/sni/tls.key: no operator identity to decrypt")
    assert note.endswith("… (+1 more)") and len(note) < 130
    row = HostStatus("full1", True, agent_health="SERVING", refused=2, note=note).row()
    assert row[5] == "refused" and row[6] == note


def test_a_backend_not_read_is_pointed_at_and_a_clean_host_has_no_note() -> None:
    plan = Plan(hosts=["full1"], unobserved=[Unobserved(host="full1", phase="dns", reason="timed out")])
    assert status_note("full1", [], plan) == "dns not read: see `mcfleet plan --on full1`"
    assert status_note("full2", [], plan) is None
