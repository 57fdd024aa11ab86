"""Text a node wrote never reaches the operator's terminal with its control sequences live.

Found: the node's `mcp` account wrote `\\e]0;PWNED-TITLE\\a\\e[2J` into a declared file, and `mcfleet plan`
printed the file's diff with the escapes raw (a terminal sets its title and clears the screen).
"""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from mcfleet.cli import commands_ops
from mcfleet.cli.output import table
from mcfleet.errors import PeerError
from mcfleet.fleet.desired import desired_state
from mcfleet.fleet.load import load_fleet
from mcfleet.kinds.files import FilesKind, unified_diff
from mcfleet.observe.facts import Facts
from mcfleet.observe.files import FileFacts
from mcfleet.observe.manifest import Manifest
from mcfleet.plan.model import Action, Plan, UnreachableHost
from mcfleet.plan.render import render_text
from mcfleet.plan.saved import plan_json, save_plan
from mcfleet.report.progress import Progress
from mcfleet.util.terminal_text import terminal_safe
from tests.conftest import run_cli

MINIMAL = Path(__file__).parent.parent / "data" / "fleets" / "minimal"
PWNED = "\x1b]0;PWNED-TITLE\x07\x1b[2J"  # set the terminal's title, clear the screen
SHOWN = "\\x1b]0;PWNED-TITLE\\x07\\x1b[2J"
RAW = ("\x1b", "\x07")
NOW = __import__("datetime").datetime(2026, 1, 1)


# --------------------------------------------------------------------------- the function


def test_control_characters_are_shown_as_python_escapes() -> None:
    assert terminal_safe(f"-hello{PWNED}") == f"-hello{SHOWN}"
    assert terminal_safe("a\x00b\x08c\x0bd\x0ce\rf\x1fg\x7fh") == "a\\x00b\\x08c\\x0bd\\x0ce\\x0df\\x1fg\\x7fh"
    assert terminal_safe("\x80\x9b31m\x9d0;t\x9c\x9f") == "\\x80\\x9b31m\\x9d0;t\\x9c\\x9f"  # C1: U+009B is a CSI


def test_text_without_control_characters_is_unchanged() -> None:
    text = "plain\ttab\nnew line  → ünïcödé \xa0 \xff € 🙂 \\x1b as typed [31m\n"
    assert terminal_safe(text) == text
    assert terminal_safe("") == ""
    every = "".join(chr(c) for c in range(0x110000) if not (c < 0x20 or 0x7F <= c <= 0x9F) and not 0xD800 <= c < 0xE000)
    assert terminal_safe(every + "\t\n") == every + "\t\n"


@pytest.mark.parametrize("code", [c for c in range(0xA0) if c < 0x20 or c >= 0x7F])
def test_every_control_but_tab_and_newline_is_escaped(code: int) -> None:
    shown = terminal_safe(f"x{chr(code)}y")
    if chr(code) in "\t\n":
        assert shown == f"x{chr(code)}y"
    else:
        assert shown == f"x\\x{code:02x}y"


# --------------------------------------------------------------------------- a plan's file diff


@pytest.fixture
def poisoned(tmp_path: Path) -> Action:
    root = tmp_path / "fleet"
    shutil.copytree(MINIMAL, root)
    (root / "files" / "web").mkdir(parents=True)
    (root / "files" / "web" / "motd").write_text("hello\n")
    svc_path = root / "hosts" / "alpha" / "services" / "web.json"
    svc = json.loads(svc_path.read_text())
    svc["files"] = [{"path": "motd", "source": "files/web/motd"}]
    svc_path.write_text(json.dumps(svc, indent=2))
    alpha = desired_state(load_fleet(root))["alpha"]
    have = FileFacts(path="/srv/web/motd", uid=850, gid=850, mode="644", sha256="0" * 64, text=f"hello{PWNED}\n")
    (action,) = FilesKind().diff(alpha, Facts(host="alpha", files=[have]), Manifest(), now=NOW)
    assert action.kind == "update" and f"-hello{PWNED}" in action.after["diff"]  # the data holds it as it is
    return action


def test_a_file_diff_in_the_plan_shows_the_escapes_and_runs_none(poisoned: Action) -> None:
    plan = Plan(created_at="2026-12-01T00:00:00+00:00", hosts=["alpha"], actions=[poisoned])
    text = render_text(plan)
    assert not any(c in text for c in RAW), text
    assert f"        -hello{SHOWN}\n" in text
    assert "        +hello\n" in text
    coloured = render_text(plan, color=True, detailed=True)
    assert "\x1b]" not in coloured and "\x07" not in coloured and "\x1b[2J" not in coloured
    assert "\x1b[33m~\x1b[0m file /srv/web/motd" in coloured  # mcfleet's own colours are kept
    assert f"-hello{SHOWN}" in coloured
    saved = plan_json(plan)  # the plan's JSON keeps the data exact (JSON escapes control characters itself)
    assert "\x1b" not in saved and f"-hello{PWNED}" in json.loads(saved)["actions"][0]["after"]["diff"]


def test_show_of_a_saved_plan_prints_the_diff_escaped_and_json_exact(poisoned: Action, tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    save_plan(Plan(created_at="2026-12-01T00:00:00+00:00", hosts=["alpha"], actions=[poisoned]), path)
    code, out, err = run_cli("show", str(path))
    assert code == 0, err
    assert not any(c in out for c in RAW), out
    assert f"-hello{SHOWN}" in out
    code, out, err = run_cli("show", str(path), "--json")
    assert code == 0, err
    assert "\x1b" not in out and f"-hello{PWNED}" in json.loads(out)["actions"][0]["after"]["diff"]


def test_unified_diff_itself_keeps_the_text_as_data() -> None:
    assert f"-hello{PWNED}" in unified_diff("/srv/sni/tls.pem", f"hello{PWNED}\n", "world\n")


def test_reasons_and_notes_from_a_node_are_escaped_too() -> None:
    plan = Plan(
        created_at="2026-12-01T00:00:00+00:00",
        hosts=["alpha", "beta"],
        actions=[
            Action(
                host="alpha", phase="host", kind="refuse", subject=f"user {PWNED}", reason=f"r{PWNED}", hint=f"h{PWNED}"
            )
        ],
        unreachable={"beta": UnreachableHost(reason=f"ssh said {PWNED}", hint=f"try {PWNED}")},
        gone_unknown=f"manifest {PWNED}",
    )
    text = render_text(plan, color=True)
    assert "\x07" not in text and "\x1b]" not in text and "\x1b[2J" not in text
    for shown in (f"user {SHOWN}", f"r{SHOWN}", f"hint: h{SHOWN}", f"ssh said {SHOWN}", f"try {SHOWN}",
                  f"note: manifest {SHOWN}"):  # fmt: skip
        assert shown in text


# --------------------------------------------------------------------------- errors, tables, progress


def test_an_error_quoting_a_node_is_printed_escaped() -> None:
    code, _out, err = run_cli("show", f"/nonexistent/{PWNED}")  # the typer path: an error from a command
    assert code == 2 and not any(c in err for c in RAW) and SHOWN in err
    from mcfleet.cli.main import _without_typer

    def failing() -> int:
        raise PeerError(f"agent said {PWNED}", location="alpha", hint=f"h{PWNED}")

    def crashing() -> int:
        raise RuntimeError(f"boom {PWNED}")

    for command, said in ((failing, f"agent said {SHOWN}"), (crashing, f"boom {SHOWN}")):
        out, stderr = io.StringIO(), io.StringIO()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(sys, "stdout", out)
            mp.setattr(sys, "stderr", stderr)
            _without_typer((False, False, None), command, detailed=False)
        assert not any(c in stderr.getvalue() for c in RAW) and said in stderr.getvalue()


def test_a_table_cell_is_escaped_and_a_plain_table_unchanged() -> None:
    assert table(["HOST", "NOTE"], [["alpha", "fine"]]) == "HOST   NOTE\nalpha  fine\n"
    assert table(["HOST", "NOTE"], [["alpha", f"x{PWNED}"]]) == f"HOST   NOTE\nalpha  x{SHOWN}\n"


def test_progress_lines_show_a_nodes_detail_escaped() -> None:
    stream = io.StringIO()
    progress = Progress(stream)
    progress.update("alpha", "gathering", f"10.0.0.1{PWNED}")
    progress.done("alpha", ok=False, detail=f"agent: {PWNED}")
    assert stream.getvalue() == f"[alpha] gathering: 10.0.0.1{SHOWN}\n[alpha] FAILED: agent: {SHOWN}\n"


# --------------------------------------------------------------------------- mcfleet logs / exec


class _Stdout(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


class _Lines:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def __aiter__(self) -> Any:
        async def gen() -> Any:
            for line in self.lines:
                yield line

        return gen()


class _Pool:
    """An SshPool whose node prints `lines` for any command."""

    lines: ClassVar[list[str]] = []

    def __init__(self, *_a: Any, **_kw: Any) -> None:
        pass

    async def __aenter__(self) -> _Pool:
        return self

    async def __aexit__(self, *_exc: Any) -> None:
        return None

    async def connect(self, _entry: Any) -> Any:
        async def create_process(_line: str) -> Any:
            async def wait() -> Any:
                return SimpleNamespace(exit_status=0, exit_signal=None)

            return SimpleNamespace(stdout=_Lines(self.lines), stderr=_Lines([]), wait=wait)

        return SimpleNamespace(conn=SimpleNamespace(create_process=create_process), become=None, user="root")


def _logs(monkeypatch: pytest.MonkeyPatch, *, tty: bool, json_out: bool = False) -> str:
    from mcfleet.transport import ssh

    _Pool.lines = [f"started {PWNED}\n", "plain line\twith tab\n"]
    monkeypatch.setattr(ssh, "SshPool", _Pool)
    monkeypatch.setattr(commands_ops, "_loaded", lambda: load_fleet(MINIMAL))
    out = _Stdout(tty)
    monkeypatch.setattr(sys, "stdout", out)
    commands_ops.logs("alpha", "agent", follow=False, lines=10, json_out=json_out)
    return out.getvalue()


def test_logs_on_a_terminal_show_the_escapes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _logs(monkeypatch, tty=True) == f"started {SHOWN}\nplain line\twith tab\n"


def test_logs_into_a_pipe_are_the_bytes_as_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _logs(monkeypatch, tty=False) == f"started {PWNED}\nplain line\twith tab\n"
    first = _logs(monkeypatch, tty=True, json_out=True).splitlines()[0]
    assert "\x1b" not in first and json.loads(first)["line"] == f"started {PWNED}"  # JSON escapes it itself


def test_exec_lines_are_escaped_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    for tty, shown in ((True, SHOWN), (False, PWNED)):
        out = _Stdout(tty)
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr(commands_ops, "use_color", lambda: False)
        commands_ops.Prefixer(["alpha"], quiet=False).line("alpha", f"hi {PWNED}\n")
        assert out.getvalue() == f"alpha | hi {shown}\n"
