"""A backend the plan could not read (the DNS server, a proxy) is said in the plan, under its kind: the
kind was compared with what the last apply recorded, so the plan may miss drift there."""

from __future__ import annotations

from pathlib import Path

from mcfleet.fleet.load import load_fleet
from mcfleet.observe.facts import Facts
from mcfleet.plan.model import Plan
from mcfleet.plan.planner import build
from mcfleet.plan.render import render_text

MINIMAL = Path(__file__).parent.parent / "data" / "fleets" / "minimal"
NODE = {"os_id": "nixos", "arch_raw": "x86_64"}  # what the minimal fleet's hosts say they are


def test_a_backend_that_did_not_answer_is_named_under_its_kind_even_without_changes() -> None:
    loaded = load_fleet(MINIMAL)
    facts = {
        "alpha": Facts(host="alpha", dns_error="127.0.0.1:1: TimeoutError: timed out", **NODE),
        "beta": Facts(host="beta", routes_error="caddy admin: connection refused", **NODE),
    }
    plan = build(loaded, facts, kinds=[], check_backends=False)  # no kind: no actions, only what was not read
    assert [(u.host, u.phase, u.reason.split(":")[0]) for u in plan.unobserved] == [
        ("alpha", "dns", "the DNS server did not answer (127.0.0.1"),
        ("beta", "route", "the proxy was not read (caddy admin"),
    ]
    lines = render_text(plan).splitlines()
    assert "alpha: no changes" not in lines  # was: "no changes", though the records were never asked
    at = lines.index("alpha")
    assert lines[at + 1 : at + 3] == [
        "  dns",
        "    not read: the DNS server did not answer (127.0.0.1:1: TimeoutError: timed out): records compared with "
        "what the last apply recorded",
    ]
    assert "drift not seen" in lines[lines.index("beta") + 2]
    assert Plan.model_validate_json(plan.model_dump_json()).unobserved == plan.unobserved
    assert Plan.model_validate({"hosts": ["alpha"]}).unobserved == []  # a plan saved before still loads


def test_backends_that_answered_leave_no_note() -> None:
    plan = build(load_fleet(MINIMAL), {"alpha": Facts(host="alpha", **NODE)}, kinds=[], check_backends=False)
    assert plan.unobserved == [] and render_text(plan).startswith("alpha: no changes")
