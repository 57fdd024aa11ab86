"""`mcfleet validate` answers without typer, and an unchanged valid fleet without loading it at all.

Each case runs the console script in a fresh process (what start-up time is about) with its own
cache folder, and reads which modules it imported from `-X importtime`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MINIMAL = REPO / "tests" / "data" / "fleets" / "minimal"


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    dest = tmp_path / "fleet"
    shutil.copytree(MINIMAL, dest)
    return dest


def validate(fleet: Path, *args: str, cache: Path) -> tuple[int, str, str, set[str]]:
    """(exit code, stdout, stderr without the import lines, modules imported)."""
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    env.pop("MCFLEET_FLEET", None)
    argv = [sys.executable, "-X", "importtime", "-m", "mcfleet", "-C", str(fleet), "validate", *args]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    imported = {ln.rsplit("|", 1)[1].strip() for ln in done.stderr.splitlines() if ln.startswith("import time:")}
    err = "\n".join(ln for ln in done.stderr.splitlines() if not ln.startswith("import time:"))
    return done.returncode, done.stdout, err, imported


def test_validate_runs_without_typer(fleet: Path, tmp_path: Path) -> None:
    code, out, _err, mods = validate(fleet, "--no-cache", cache=tmp_path / "cache")
    assert code == 0 and out.startswith("ok: ")
    assert "typer" not in mods and "pydantic" in mods  # it did validate, without the CLI framework


def test_an_unchanged_valid_fleet_is_answered_without_pydantic(fleet: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = validate(fleet, cache=cache)
    second = validate(fleet, cache=cache)
    assert first[0] == second[0] == 0 and first[1] == second[1]
    assert "pydantic" in first[3] and "pydantic" not in second[3] and "typer" not in second[3]
    as_json = validate(fleet, "--json", cache=cache)
    assert as_json[0] == 0 and "pydantic" not in as_json[3]
    data = json.loads(as_json[1])
    assert data["valid"] is True and data["findings"] == [] and data["root"] == str(fleet.resolve())
    assert not (fleet / ".mcfleet").exists()  # the remembered result lives in the user's cache, not the fleet


def test_an_edit_of_the_same_size_is_seen_at_once(fleet: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert validate(fleet, cache=cache)[0] == 0
    host = next(fleet.glob("hosts/*/host.json"))
    text = host.read_text()
    stat = host.stat()
    broken = text.replace('"roles"', '"rolse"', 1)
    assert broken != text and len(broken) == len(text)
    host.write_text(broken)
    os.utime(host, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same mtime: only the content differs
    code, out, err, _mods = validate(fleet, cache=cache)
    assert code == 2 and "rolse" in out and "did you mean" in out and "problem(s)" in err


def test_a_new_host_file_and_a_secret_change_are_seen(fleet: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert validate(fleet, cache=cache)[0] == 0
    extra = fleet / "hosts" / "zz-broken"
    extra.mkdir()
    (extra / "host.json").write_text("{")
    assert validate(fleet, cache=cache)[0] == 2
    shutil.rmtree(extra)
    assert validate(fleet, cache=cache)[0] == 0
    (fleet / "secrets").mkdir(exist_ok=True)
    (fleet / "secrets" / "x.recipients").write_text("age1notakey\n")
    second = validate(fleet, cache=cache)
    assert "pydantic" in second[3]  # a changed input validates again (whatever the verdict)


def test_a_source_gone_or_edited_after_a_valid_run_is_seen(fleet: Path, tmp_path: Path) -> None:
    """A service's `source` (files/…, outside hosts/) is read by the source-unreadable rule: a remembered
    "valid" must not outlive it."""
    cache = tmp_path / "cache"
    web = fleet / "hosts" / "alpha" / "services" / "web.json"
    svc = json.loads(web.read_text())
    svc["files"] = [{"path": "motd", "source": "files/web/motd"}]
    web.write_text(json.dumps(svc))
    (fleet / "files" / "web").mkdir(parents=True)
    (fleet / "files" / "web" / "motd").write_text("hello\n")
    assert validate(fleet, cache=cache)[0] == 0
    assert "pydantic" not in validate(fleet, cache=cache)[3]  # remembered
    (fleet / "files" / "web" / "motd").write_text("hello, world\n")
    assert "pydantic" in validate(fleet, cache=cache)[3]  # an edited source: validated again
    (fleet / "files" / "web" / "motd").unlink()
    code, out, _err, _mods = validate(fleet, cache=cache)
    assert code == 2 and "source-unreadable: hosts/alpha/services/web.json#/files/0/source" in out


def test_a_symlink_in_the_fleet_is_never_answered_from_the_cache(fleet: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    host = next(fleet.glob("hosts/*"))
    (fleet / "hosts" / "alias").symlink_to(host)
    validate(fleet, cache=cache)
    assert "pydantic" in validate(fleet, cache=cache)[3]


def test_forms_the_fast_path_does_not_know_go_through_typer(fleet: Path, tmp_path: Path) -> None:
    code, out, _err, mods = validate(fleet, "--help", cache=tmp_path / "cache")
    assert code == 0 and "--no-cache" in out and "typer" in mods
    code, _out, err, _mods = validate(fleet, "--bogus", cache=tmp_path / "cache")
    assert code == 2 and "--bogus" in err


def test_a_cache_folder_that_cannot_be_written_is_not_used(fleet: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    for _ in range(2):
        code, out, err, mods = validate(fleet, cache=blocked / "cache")
        assert code == 0 and out.startswith("ok: ") and "Traceback" not in err
        assert "pydantic" in mods  # validated each time
