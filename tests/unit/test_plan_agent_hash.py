"""`mcfleet plan` compares Debian nodes' agents with the bundle already built for these sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcfleet.bundle.build import BUNDLE_NAME, _inputs, cached_bundle_sha256, current_inputs_hash
from mcfleet.cli.commands_plan import bundle_hashes
from mcfleet.fleet.load import load_fleet

REPO = Path(__file__).resolve().parents[2]


def test_no_bundle_built_yet_gives_a_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCFLEET_BUNDLE_CACHE", str(tmp_path))
    assert cached_bundle_sha256() is None
    hashes, note, inputs = bundle_hashes(load_fleet(REPO), ["svc", "rift"])
    assert hashes == {} and inputs == ""  # nothing built: a saved plan records no sources to compare
    assert note is not None and "not built yet" in note


def test_built_bundle_is_the_agent_debian_hosts_should_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCFLEET_BUNDLE_CACHE", str(tmp_path))
    *_, slot = _inputs(None)
    slot.mkdir(parents=True)
    (slot / BUNDLE_NAME).write_bytes(b"pex")
    (slot / f"{BUNDLE_NAME}.sha256").write_text(f"{'b' * 64}  {BUNDLE_NAME}\n")
    hashes, note, inputs = bundle_hashes(load_fleet(REPO), ["svc", "rift", "hyperborea"])
    # Debian hosts (svc, hyperborea) get the bundle; NixOS rift's agent comes from the flake.
    assert hashes == {"svc": "b" * 64, "hyperborea": "b" * 64}
    assert note is None
    assert inputs == current_inputs_hash() and slot.name == inputs[:24]  # the sources the hashes came from
