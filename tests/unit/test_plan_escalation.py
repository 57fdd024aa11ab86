"""A host whose login may not escalate (no sudo/doas rule) is named as such in the plan, not as unreachable."""

from __future__ import annotations

from mcfleet.plan.model import Plan, UnreachableHost
from mcfleet.plan.render import render_text

RULE = "add the rule: permit nopass kyle as root   (in /etc/doas.conf)"
PLAN = Plan(
    hosts=["orion", "rift", "svc"],
    unreachable={
        "orion": UnreachableHost(reason="no address answered"),
        "rift": UnreachableHost(
            reason="`doas -n` refuses to run commands as root for kyle without a password (doas: Operation not "
            "permitted)",
            hint=RULE,
            escalation=True,
        ),
    },
)


def test_a_missing_rule_is_its_own_line_with_the_rule_and_its_own_count() -> None:
    lines = render_text(PLAN).splitlines()
    at = lines.index(next(line for line in lines if line.startswith("rift: ")))
    assert lines[at].startswith("rift: cannot run as root: `doas -n` refuses")
    assert lines[at + 1] == f"  hint: {RULE}"
    assert any(line.startswith("orion: unreachable: no address answered") for line in lines)
    assert lines[-1].endswith("; 1 host unreachable (orion); 1 host without a sudo/doas rule (rift).")


def test_a_saved_plan_keeps_the_flag_and_an_older_one_without_it_still_loads() -> None:
    again = Plan.model_validate_json(PLAN.model_dump_json())
    assert again.unreachable["rift"].escalation and not again.unreachable["orion"].escalation
    old = Plan.model_validate({"hosts": ["orion"], "unreachable": {"orion": {"reason": "no address answered"}}})
    assert old.unreachable["orion"].escalation is False
