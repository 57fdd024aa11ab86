"""A declared file's `source` is a file of the fleet folder: a link in the folder that leads out of it (a commit
can carry `files/sni/tls.pem -> ~/.ssh/id_ed25519`) is refused by validate, plan and render, never read."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mcfleet.cli.app import app
from mcfleet.errors import InputError
from mcfleet.fleet.desired import desired_state
from mcfleet.fleet.load import load_fleet
from mcfleet.fleet.rules import check

MINIMAL = Path(__file__).resolve().parent.parent / "data" / "fleets" / "minimal"
SECRET = "-----BEGIN OPENSSH PRIVATE KEY-----\noperator's own key\n"


def _fleet(tmp_path: Path) -> Path:
    root = tmp_path / "fleet"
    shutil.copytree(MINIMAL, root)
    (root / "files" / "web").mkdir(parents=True)
    svc_path = root / "hosts" / "alpha" / "services" / "web.json"
    svc = json.loads(svc_path.read_text())
    svc["files"] = [{"path": "tls.pem", "source": "files/web/tls.pem"}]
    svc_path.write_text(json.dumps(svc, indent=2))
    return root


def test_a_source_linked_out_of_the_fleet_folder_is_a_finding_and_never_read(tmp_path: Path) -> None:
    root = _fleet(tmp_path)
    key = tmp_path / "id_ed25519"
    key.write_text(SECRET)
    (root / "files" / "web" / "tls.pem").symlink_to(key)
    loaded = load_fleet(root)

    found = [f for f in check(loaded) if f.code == "source-unreadable"]
    assert [(f.file, f.pointer) for f in found] == [("hosts/alpha/services/web.json", "/files/0/source")]
    assert f"a link to {key}, outside the fleet folder" in found[0].message
    with pytest.raises(InputError) as err:
        desired_state(loaded)
    assert "outside the fleet folder" in err.value.message and "operator's own key" not in err.value.message
    res = CliRunner().invoke(app, ["-C", str(root), "render", "web"])
    assert res.exit_code != 0 and "operator's own key" not in res.output and "OPENSSH" not in res.output


def test_a_source_linked_inside_the_fleet_folder_is_read(tmp_path: Path) -> None:
    root = _fleet(tmp_path)
    (root / "files" / "common.pem").write_text("shared\n")
    (root / "files" / "web" / "tls.pem").symlink_to("../common.pem")
    loaded = load_fleet(root)
    assert not [f for f in check(loaded) if f.code == "source-unreadable"]
    assert desired_state(loaded)["alpha"].files["/srv/web/tls.pem"].content == "shared\n"


def test_a_source_that_is_a_fifo_is_a_finding_without_blocking(tmp_path: Path) -> None:
    root = _fleet(tmp_path)
    os.mkfifo(root / "files" / "web" / "tls.pem")
    loaded = load_fleet(root)
    found: list[object] = []

    def plan_reads() -> None:
        found.extend(check(loaded))
        try:
            desired_state(loaded)  # what plan and render read
        except InputError as exc:
            found.append(exc.message)

    reader = threading.Thread(target=plan_reads, daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "reading a FIFO source blocked"
    assert any(getattr(f, "code", "") == "source-unreadable" for f in found)
    assert "files/web/tls.pem is not a file in the fleet folder" in found
