"""The plan as a person sees it: colours on a terminal (none with NO_COLOR or in a pipe), `old → new`
for changed fields, a summary per host and for the fleet — run under a real pseudo-terminal."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from mcfleet.plan.model import Action, Plan, UnreachableHost
from mcfleet.plan.render import render_text
from mcfleet.plan.saved import save_plan
from tests.conftest import run_cli
from tests.pty_run import run_in_pty

ESC = "\x1b["
IMAGE_BUMP = Action(
    host="rift", phase="deploy", kind="update", subject="service web", reason="image web: reg/web:v1 → reg/web:v2",
    before={"stage": "core", "images": {"web": "reg/web:v1"}, "ports": {"web": 20001}, "containers": ["web"]},
    after={"stage": "core", "images": {"web": "reg/web:v2"}, "ports": {"web": 20002}, "containers": ["web"]},
)  # fmt: skip
AGENT = Action(
    host="rift", phase="agent", kind="update", subject="agent", reason="binary not confirmed by an earlier apply",
    before={"sha256": "a" * 64, "unit": "mcp-agent.service"}, after={"sha256": "b" * 64, "unit": "mcp-agent.service"},
)  # fmt: skip
PLAN = Plan(
    created_at="2026-12-01T00:00:00+00:00",
    hosts=["orion", "rift", "svc"],
    actions=[
        AGENT,
        IMAGE_BUMP,
        Action(host="rift", phase="deploy", kind="create", subject="service api", reason="declared in the files"),
        Action(host="rift", phase="host", kind="refuse", subject="user mcp", reason="UID 995 is not 850", hint="keep"),
    ],
    unreachable={"orion": UnreachableHost(reason="no address answered")},
)


def test_changed_fields_are_old_to_new_and_an_image_bump_shows_tags_not_hashes() -> None:
    text = render_text(PLAN)
    assert "        sha256: aaaaaaaaaaaa… → bbbbbbbbbbbb…" in text  # a hash is cut, not a blob
    assert "        ports.web: 20001 → 20002" in text
    assert "images.web" not in text  # the reason already says `reg/web:v1 → reg/web:v2`: not twice
    assert "    ~ service web  image web: reg/web:v1 → reg/web:v2" in text
    assert "  rift: 1 to create, 2 to update, 0 to delete, 1 refused" in text
    assert text.rstrip().endswith("Plan: 1 to create, 2 to update, 0 to replace, 0 to delete, 1 refused; "
                                  "1 host unreachable (orion).")  # fmt: skip
    assert ESC not in text
    assert "svc: no changes" in text


def test_show_under_a_terminal_is_coloured_and_plain_with_no_color(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    save_plan(PLAN, path)
    argv = [sys.executable, "-m", "mcfleet", "show", str(path)]
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | {"TERM": "xterm"}
    code, screen = run_in_pty(argv, env=env)
    assert code == 0, screen
    assert f"{ESC}33m~{ESC}0m service web" in screen  # update: yellow
    assert f"{ESC}32m+{ESC}0m service api" in screen  # create: green
    assert f"{ESC}1;31m!{ESC}0m user mcp" in screen  # refusal: bold red
    assert f"{ESC}1mrift{ESC}0m" in screen  # host names bold
    assert "ports.web: 20001 → 20002" in screen
    code, plain = run_in_pty(argv, env=env | {"NO_COLOR": "1"})
    assert code == 0 and ESC not in plain and "~ service web" in plain
    code, piped, _err = run_cli("show", str(path))  # not a terminal: no colour
    assert code == 0 and ESC not in piped
    assert re.sub(r"\x1b\[[0-9;]*m", "", screen).replace("\r\n", "\n").endswith(piped)


def test_a_host_line_counts_a_replace_as_the_plan_line_does() -> None:
    replace = IMAGE_BUMP.model_copy(update={"kind": "replace", "subject": "service api"})
    text = render_text(PLAN.model_copy(update={"actions": [*PLAN.actions, replace]}))
    assert "  rift: 1 to create, 2 to update, 1 to replace, 0 to delete, 1 refused" in text
    assert "Plan: 1 to create, 2 to update, 1 to replace, 0 to delete, 1 refused" in text


def test_values_equal_before_and_after_are_printed_once() -> None:
    """A definition change the summarised values do not show (an env var): `--values` printed two equal lines."""
    same = {"containers": ["api"], "stage": "services"}
    reason = 'the service definition changed: components[0].env: [] → ["A=1"]'
    recreate = Action(host="rift", phase="deploy", kind="replace", subject="service api", reason=reason,
                      before=same, after=same)  # fmt: skip
    text = render_text(Plan(created_at="2026-12-01T00:00:00+00:00", hosts=["rift"], actions=[recreate]), detailed=True)
    assert '        before = after: {"containers": ["api"], "stage": "services"}' in text
    assert "before: " not in text and "after:  " not in text
    assert "        before: " in render_text(PLAN, detailed=True)  # values that differ: both lines, as before
