"""`mcfleet lab down` where no lab was ever up leaves the folder as it was; an unknown lab node name
is invalid input (exit 2) with the lab's nodes in the hint.  No root needed: nothing here reaches
a namespace, a mount or a process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcfleet.lab.nodes import LabNode
from mcfleet.lab.state import LabState, Resource
from tests.conftest import run_cli


@pytest.fixture(autouse=True)
def _as_if_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mcfleet.cli.commands_lab.require_root", lambda: None)


def test_down_where_no_lab_was_ever_up_leaves_the_folder_untouched(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = run_cli("lab", "down", "--dir", str(empty))
    assert (code, err) == (0, ""), err
    assert out == f"no lab was up in {empty}\n"
    assert list(empty.iterdir()) == []  # no .lab/ (nor its lock) made just to find nothing

    code, out, err = run_cli("lab", "down", "--dir", str(empty), "--json")
    assert code == 0, err
    assert json.loads(out) == {"dir": str(empty.resolve()), "removed": []}
    assert list(empty.iterdir()) == []

    missing = tmp_path / "never-made"
    code, out, err = run_cli("lab", "down", "--dir", str(missing))
    assert code == 0, err
    assert out.startswith("no lab was up in ")
    assert not missing.exists()


def _lab_with(root: Path, *names: str) -> None:
    state = LabState(root / ".lab" / "state.json")
    for index, name in enumerate(names):
        node = LabNode(name, "full", index, f"10.77.250.{11 + index}", 22, f"mcltest{index}",
                       "ssh-ed25519 AAAA", str(root / ".lab" / "nodes" / name), 999999, 999999, None)  # fmt: skip
        state.info.setdefault("nodes", {})[name] = node.as_dict()
    state.resources.append(Resource("dir", str(root / ".lab" / "nodes")))
    state.save()


def test_reboot_of_a_node_the_lab_does_not_have_is_invalid_input(tmp_path: Path) -> None:
    _lab_with(tmp_path, "full1", "full2")
    code, out, err = run_cli("lab", "reboot", "nosuch", "--dir", str(tmp_path))
    assert code == 2, err
    assert out == ""
    assert f"lab {tmp_path.resolve()}: no lab node named 'nosuch'" in err, err
    assert "\n  hint: nodes: full1, full2" in err, err
