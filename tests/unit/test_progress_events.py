"""Long work shows progress: the push's bytes, nix's running build and its log lines, the bundle's steps.

Progress is an event (`status: progress`) like every other step, so the live view, the plain
lines of a pipe or log and the `--json` stream all show it; no test here depends on timing.
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import shutil
from pathlib import Path

import pytest

from mcfleet.apply.artifacts import Builder
from mcfleet.apply.events import Phase, Status, ndjson_writer
from mcfleet.apply.nodeio import upload
from mcfleet.apply.session import ApplySession, SessionOptions
from mcfleet.fleet.load import load_fleet
from mcfleet.report.progress import LiveProgress, Progress, make_progress
from mcfleet.report.rate import Every, megabytes
from mcfleet.transport.local import LocalNode
from tests.unit.test_apply_pipeline import entry

REPO = Path(__file__).resolve().parents[2]


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_an_upload_reports_zero_first_and_the_whole_size_last(tmp_path: Path) -> None:
    src = tmp_path / "bundle.pex"
    src.write_bytes(secrets.token_bytes(3_000_000))
    seen: list[tuple[int, int]] = []
    sent = asyncio.run(upload(LocalNode("n"), src, str(tmp_path / "copy"), progress=lambda d, t: seen.append((d, t))))
    assert sent == 3_000_000 and (tmp_path / "copy").read_bytes() == src.read_bytes()
    assert seen[0] == (0, 3_000_000) and seen[-1] == (3_000_000, 3_000_000)
    assert megabytes(1_234_567, 22_000_000) == "1.2/22.0 MB"


def test_reports_are_thinned_but_the_first_and_forced_ones_always_go_out() -> None:
    every = Every(3600)
    assert every.due() and not every.due() and not every.due() and every.due(force=True)


def _session(stream: io.StringIO, *, json_out: io.StringIO | None = None) -> ApplySession:
    loaded = load_fleet(REPO / "tests" / "data" / "fleets" / "minimal")
    listeners = [ndjson_writer(json_out)] if json_out is not None else []
    return ApplySession(loaded, SessionOptions(progress=make_progress(stream, title="apply"), listeners=listeners))


def test_push_progress_is_a_plain_line_and_a_json_event() -> None:
    plain, stream = io.StringIO(), io.StringIO()
    session = _session(plain, json_out=stream)
    session.log.emit("alpha", Phase.push, Status.start)
    sizes = {"bytes_done": 12_300_000, "bytes_total": 22_000_000}
    session.log.emit("alpha", Phase.push, Status.progress, "12.3/22.0 MB", **sizes)
    session.log.emit("alpha", Phase.build, Status.progress, "nix: building '/nix/store/abc-system.drv'...")
    assert "[alpha] push: 12.3/22.0 MB\n" in plain.getvalue()
    assert "[alpha] build: nix: building '/nix/store/abc-system.drv'...\n" in plain.getvalue()
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    progress = [e for e in events if e["status"] == "progress" and e["phase"] == "push"]
    assert progress == [{**progress[0], "host": "alpha", "message": "12.3/22.0 MB", "data": sizes}]
    assert session.log.total("bytes_sent") == 0  # progress never counts as bytes sent in the summary


def test_the_live_view_shows_the_push_bytes_and_the_last_nix_line() -> None:
    tty = FakeTty()
    session = _session(tty)
    assert isinstance(session.options.progress, LiveProgress)
    session.log.emit("alpha", Phase.push, Status.progress, "12.3/22.0 MB")
    session.log.emit("beta", Phase.build, Status.progress, "nix: copying path '/nix/store/xyz-glibc'")
    session.options.progress.close()
    text = tty.getvalue()
    assert "12.3/22.0 MB" in text and "copying path" in text and "push" in text and "build" in text


def test_a_plain_progress_line_per_update_without_a_terminal() -> None:
    out = io.StringIO()
    progress = make_progress(out)
    assert type(progress) is Progress
    progress.update("rift", "push", "0.0/22.0 MB")
    progress.update("rift", "push", "22.0/22.0 MB")
    assert out.getvalue() == "[rift] push: 0.0/22.0 MB\n[rift] push: 22.0/22.0 MB\n"


@pytest.mark.nix
def test_a_nix_build_says_it_runs_and_shows_the_builders_log_lines(tmp_path: Path) -> None:
    """A real `nix build` of a tiny system (a fresh derivation each run, so it really builds)."""
    assert shutil.which("nix"), "nix-bin is installed by scripts/setup.sh"
    nonce = secrets.token_hex(8)
    (tmp_path / "flake.nix").write_text(
        "{ outputs = { self }: { nixosConfigurations.rift.config.system.build.toplevel = derivation {\n"
        f'  name = "progress-probe-{nonce}"; system = "x86_64-linux"; builder = "/bin/sh";\n'
        '  args = [ "-c" "echo compiling step one; echo compiling step two; echo done > $out" ]; }; }; }\n'
    )
    reports: list[tuple[str, str]] = []
    builder = Builder(flake=tmp_path, report=lambda key, msg: reports.append((key, msg)))
    art = asyncio.run(builder.build(entry("rift", tmp_path, os="nixos").host))
    assert art.store_path is not None and art.store_path.endswith(f"progress-probe-{nonce}")
    assert reports[0] == ("nix:rift", "nix build of rift's system: running (its log lines follow)")
    lines = [msg for key, msg in reports[1:] if key == "nix:rift"]
    assert lines and all(m.startswith("nix: ") for m in lines)
    assert "progress-probe" in lines[-1]  # the last line always shows: the builder's own (`-L`): `…> compiling…`


def test_the_live_view_under_a_real_terminal_shows_the_steps_of_a_long_apply() -> None:
    """A pty, as a person sees it: the bundle step, then the push's bytes, in the host's row."""
    import os
    import sys

    from tests.pty_run import run_in_pty

    script = (
        "import sys\n"
        "from mcfleet.apply.events import Phase, Status\n"
        "from tests.unit.test_progress_events import _session\n"
        "session = _session(sys.stderr)\n"
        "session.log.emit('alpha', Phase.build, Status.progress, 'agent bundle: building with pex')\n"
        "session.log.emit('alpha', Phase.push, Status.progress, '12.3/22.0 MB')\n"
        "session.options.progress.close()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | {"TERM": "xterm", "PYTHONPATH": str(REPO)}
    code, screen = run_in_pty([sys.executable, "-c", script], env=env, cwd=REPO)
    assert code == 0, screen
    assert "\x1b[33mbuild\x1b[0m" in screen and "agent bundle: building with pex" in screen, screen
    assert "\x1b[33mpush\x1b[0m" in screen and "12.3/22.0 MB" in screen, screen
