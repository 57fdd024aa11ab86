"""Plan and apply agree on the order things happen on a host: the plan's text lists a host's actions in the
passes apply runs them (host and agent; then each phase's changes in phase order; then the removals in
reverse phase order, so a DNS name and a route go before the container they lead to and a certificate
last; the manifest at the end), and apply's summary lists the phases in the order they ran.  The plan
used to show a removal at its phase's place (`cert`, `deploy`, `route`, `dns`) though apply ran them the
other way round."""

from __future__ import annotations

from typing import Any, cast

from mcfleet.apply.events import ApplyEvents, Phase, Status
from mcfleet.apply.pipeline import HostWork
from mcfleet.apply.summary import summarize
from mcfleet.plan.model import Action, Plan, Unobserved, apply_passes, sort_actions
from mcfleet.plan.render import render_text


def _act(phase: str, kind: str, subject: str) -> Action:
    return Action(host="rift", phase=phase, kind=kind, subject=subject, reason="r")


# A service renamed from api to web, and the host's dhcpcd hook taken away, in the planner's order.
ACTIONS = sort_actions(
    [
        _act("manifest", "update", "manifest"),
        _act("dns", "delete", "dns api.example.test"),
        _act("dns", "create", "dns web.example.test"),
        _act("route", "delete", "route 443/api.example.test"),
        _act("deploy", "delete", "service api"),
        _act("deploy", "create", "service web"),
        _act("files", "refuse", "file /srv/web/app.conf"),
        _act("cert", "delete", "cert api"),
        _act("cert", "create", "cert web"),
        _act("host", "delete", "dhcpcd hook"),
    ],
    ["rift"],
)


def test_the_plan_lists_removals_after_the_changes_in_reverse_phase_order() -> None:
    plan = Plan(created_at="2026-12-07T00:00:00+00:00", hosts=["rift"], actions=ACTIONS,
                unobserved=[Unobserved(host="rift", phase=Phase.route, reason="Caddy is not listening")])  # fmt: skip
    lines = render_text(plan).splitlines()
    headers = [line.strip() for line in lines if line.startswith("  ") and not line.startswith("   ")]
    assert headers == [
        "host", "cert", "files", "deploy", "route", "dns",
        "dns removals", "route removals", "deploy removals", "cert removals",
        "manifest", "rift: 3 to create, 1 to update, 5 to delete, 1 refused",
    ]  # fmt: skip
    assert lines[lines.index("  route") + 1] == "    not read: Caddy is not listening"  # a phase with no actions
    assert lines[lines.index("  dns removals") + 1] == "    - dns api.example.test  r"
    assert lines[lines.index("  cert removals") + 1] == "    - cert api  r"
    # the saved plan's (and --json's) order is the same: apply_passes only groups it
    assert [a for _p, _r, acts in apply_passes(ACTIONS) for a in acts] == ACTIONS
    assert ACTIONS[0].subject == "dhcpcd hook"  # the host phase runs whole, before the agent


def test_apply_runs_the_passes_the_plan_shows_and_its_summary_lists_them_so() -> None:
    work = HostWork(entry=cast(Any, None), desired=cast(Any, None), actions=tuple(ACTIONS))
    assert [(p, [a.subject for a in acts]) for p, acts in work.step_passes] == [
        (Phase.cert, ["cert web"]),
        (Phase.deploy, ["service web"]),
        (Phase.dns, ["dns web.example.test"]),
        (Phase.dns, ["dns api.example.test"]),
        (Phase.route, ["route 443/api.example.test"]),
        (Phase.deploy, ["service api"]),
        (Phase.cert, ["cert api"]),
    ]  # the refused file is not run
    shown = [(p, acts) for p, _removal, acts in apply_passes(ACTIONS) if p not in (Phase.host, Phase.manifest)]
    assert [(p, [a for a in acts if a.kind != "refuse"]) for p, acts in shown if p != Phase.files] == work.step_passes

    # A host whose api service goes: the removals alone, in the order they ran.
    gone = HostWork(entry=cast(Any, None), desired=cast(Any, None),
                    actions=tuple(a for a in ACTIONS if a.kind == "delete" and a.phase != Phase.host))  # fmt: skip
    assert gone.step_phases == [Phase.dns, Phase.route, Phase.deploy, Phase.cert]
    log = ApplyEvents()
    for phase in gone.step_phases:
        log.emit("rift", phase, Status.changed, f"{phase} removed")
    log.emit("rift", Phase.manifest, Status.changed, "written")
    summary = summarize(log, ["rift"], {"rift": [*gone.step_phases, Phase.manifest]}, 1.0)
    assert [line.split()[0] for line in summary.render().splitlines()[1:6]] == [
        "dns", "route", "deploy", "cert", "manifest"
    ]  # fmt: skip
