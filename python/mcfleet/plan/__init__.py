"""The plan: desired (files) vs observed (facts) as ordered actions, rendered separately.

    from mcfleet.plan import build, Plan, Action
    plan = build(loaded, facts)                  # pure diff + hashes for staleness
    render_text(plan) / plan_json(plan)          # plan.render / plan.saved
    load_plan(path, root=...) ; ensure_fresh(plan, facts)   # apply's staleness checks

Imported lazily so `plan.desired` stays importable from observe without a cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcfleet.plan.model import Action as Action
    from mcfleet.plan.model import Plan as Plan
    from mcfleet.plan.planner import build as build
    from mcfleet.plan.saved import ensure_fresh as ensure_fresh
    from mcfleet.plan.saved import load_plan as load_plan

__all__ = ["Action", "Plan", "build", "ensure_fresh", "load_plan"]

_WHERE = {
    "build": "mcfleet.plan.planner",
    "Action": "mcfleet.plan.model",
    "Plan": "mcfleet.plan.model",
    "ensure_fresh": "mcfleet.plan.saved",
    "load_plan": "mcfleet.plan.saved",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(name)
