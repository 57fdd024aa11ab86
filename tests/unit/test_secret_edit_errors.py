"""`secret edit`: an editor that cannot run is a clear error naming it and $VISUAL/$EDITOR, and an
emptied file is refused as `secret set` refuses an empty value (unless --allow-empty); nothing is
written either way.  The CLI runs as a real process with a real editor command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyrage  # type: ignore[import-untyped]
import pytest

MINIMAL = Path(__file__).parent.parent / "data" / "fleets" / "minimal"


@pytest.fixture(name="fleet")
def fleet_fixture(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The minimal fleet with an operator's age key; (root, the environment to run mcfleet with)."""
    root = tmp_path / "fleet"
    shutil.copytree(MINIMAL, root)
    operator = pyrage.x25519.Identity.generate()
    ident = tmp_path / "operator.key"
    ident.write_text(f"{operator}\n")
    ident.chmod(0o600)
    fleet = json.loads((root / "fleet.json").read_text())
    fleet["secret_recipients"] = [str(operator.to_public())]
    (root / "fleet.json").write_text(json.dumps(fleet))
    env = {k: v for k, v in os.environ.items() if k not in ("VISUAL", "EDITOR")}
    env["MCFLEET_AGE_IDENTITY"] = str(ident)
    return root, env


def mcfleet(root: Path, env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "mcfleet", "-C", str(root), *args]
    return subprocess.run(argv, env=env, input=stdin, capture_output=True, text=True, check=False, timeout=60)


def test_an_editor_that_does_not_exist_is_named_and_nothing_changes(fleet: tuple[Path, dict[str, str]]) -> None:
    root, env = fleet
    assert mcfleet(root, env, "secret", "set", "tok", stdin="v1").returncode == 0
    before = (root / "secrets" / "tok.age").read_bytes()
    for name in ("tok", "new-one"):
        res = mcfleet(root, {**env, "EDITOR": "/nonexistent-editor"}, "secret", "edit", name)
        assert res.returncode == 2, res.stderr
        assert "internal error" not in res.stderr and "Traceback" not in res.stderr
        assert "/nonexistent-editor" in res.stderr and "$EDITOR" in res.stderr and "$VISUAL" in res.stderr
        assert f"secret {name} not changed" in res.stderr
    assert (root / "secrets" / "tok.age").read_bytes() == before
    assert not (root / "secrets" / "new-one.age").exists()
    assert mcfleet(root, env, "secret", "show", "tok").stdout == "v1"


def test_visual_comes_before_editor(fleet: tuple[Path, dict[str, str]]) -> None:
    root, env = fleet
    res = mcfleet(root, {**env, "VISUAL": "/no-such-visual", "EDITOR": "true"}, "secret", "edit", "tok")
    assert res.returncode == 2 and "/no-such-visual" in res.stderr and "$VISUAL" in res.stderr, res.stderr


def test_an_emptied_file_is_refused_unless_allow_empty(fleet: tuple[Path, dict[str, str]]) -> None:
    root, env = fleet
    assert mcfleet(root, env, "secret", "set", "tok", stdin="v1").returncode == 0
    before = (root / "secrets" / "tok.age").read_bytes(), (root / "secrets" / "tok.recipients").read_bytes()
    emptying = {**env, "EDITOR": "truncate -s 0"}  # the editor empties the file it is given
    res = mcfleet(root, emptying, "secret", "edit", "tok")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "empty" in res.stderr and "--allow-empty" in res.stderr and "recipient" not in res.stdout
    after = (root / "secrets" / "tok.age").read_bytes(), (root / "secrets" / "tok.recipients").read_bytes()
    assert after == before
    assert mcfleet(root, env, "secret", "show", "tok").stdout == "v1"
    # a new secret left empty is not created either
    assert mcfleet(root, emptying, "secret", "edit", "fresh").returncode == 2
    assert not (root / "secrets" / "fresh.age").exists()
    # asked for, it is stored
    res = mcfleet(root, emptying, "secret", "edit", "tok", "--allow-empty")
    assert res.returncode == 0 and "encrypted to 1 recipient(s)" in res.stdout, res.stderr
    shown = mcfleet(root, env, "secret", "show", "tok")
    assert (shown.returncode, shown.stdout) == (0, "")


def test_an_edit_that_changes_nothing_says_so(fleet: tuple[Path, dict[str, str]]) -> None:
    root, env = fleet
    assert mcfleet(root, env, "secret", "set", "tok", stdin="v1").returncode == 0
    res = mcfleet(root, {**env, "EDITOR": "true"}, "secret", "edit", "tok")
    assert (res.returncode, res.stdout) == (0, "secret tok: unchanged\n"), res.stderr
