"""The host kind's folders (service volumes under /srv) are made by root's node helper: a folder under one
the agent's account owns can be swapped for a link, which a shell `chown` run as root would follow."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from mcfleet.errors import McfleetError
from mcfleet.fleet.desired import DesiredDir, desired_state
from mcfleet.fleet.load import load_fleet
from mcfleet.kinds.base import ApplyContext
from mcfleet.kinds.host import HostKind
from mcfleet.observe.manifest import Manifest
from mcfleet.plan.model import Action
from mcfleet.transport.local import LocalNode

MINIMAL = Path(__file__).parent.parent / "data" / "fleets" / "minimal"
HELPER_SOURCE = Path(__file__).resolve().parents[2] / "python" / "mcfleet" / "apply" / "node_helper.py"


class HelperHere(LocalNode):
    """A local node whose root store is a scratch folder and whose helper is the package's source file."""

    async def run(self, command: Any, **kw: Any) -> Any:
        if isinstance(command, list) and command[:1] == ["python3"]:
            command = ["python3", str(HELPER_SOURCE), *command[2:]]
        return await super().run(command, **kw)


def _apply(tmp_path: Path, dirs: list[DesiredDir]) -> Any:
    loaded = load_fleet(MINIMAL)
    alpha = dataclasses.replace(desired_state(loaded)["alpha"], dirs=dirs)
    node = HelperHere("alpha", store=str(tmp_path / "store"))
    ctx = ApplyContext(loaded, loaded.hosts["alpha"], node, alpha, Manifest())
    acts = [Action(host="alpha", phase="host", kind="update", subject=f"dir {d.path}") for d in dirs]
    return asyncio.run(HostKind().apply(ctx, acts))


def test_the_folders_are_made_with_their_owner_and_mode(tmp_path: Path) -> None:
    db = tmp_path / "srv" / "db"
    outcome = _apply(tmp_path, [DesiredDir(str(db), "4242", "4243", "0750")])
    assert outcome.status == "changed"
    st = db.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (4242, 4243, 0o750)


def test_a_folder_swapped_for_a_link_is_refused_and_its_target_left_alone(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir(mode=0o755)
    db = tmp_path / "srv" / "db"
    db.mkdir(parents=True)
    os.chown(db, 4242, 4242)
    (db / "sub").symlink_to(etc)  # what the agent's account can do in its own folder
    with pytest.raises(McfleetError, match="refusing to follow it"):
        _apply(tmp_path, [DesiredDir(str(db / "sub"), "4242", "4242", "0750")])
    assert (etc.stat().st_uid, etc.stat().st_mode & 0o777) == (0, 0o755)
