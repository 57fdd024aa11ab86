"""The plan: desired (files) vs observed (facts) as ordered actions, rendered separately.

from mcfleet.plan.planner import build          # build(loaded, facts) -> Plan: every kind's diff
from mcfleet.plan.render import render_text     # for people; plan.saved.plan_json for machines
from mcfleet.plan.saved import load_plan, ensure_fresh   # apply's staleness checks
"""
