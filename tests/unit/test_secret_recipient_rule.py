"""validate: an entry of fleet.json secret_recipients that no secret could be encrypted to is a finding
(fleet.json#/secret_recipients/N), not a failure of the next `secret set`; the age library is imported
only for a fleet that lists recipients (validate's start-up is benchmarked)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyrage  # type: ignore[import-untyped]

from tests.conftest import REPO, run_cli

MINIMAL = REPO / "tests" / "data" / "fleets" / "minimal"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def fleet_with_recipients(tmp_path: Path, recipients: list[str]) -> Path:
    root = tmp_path / "fleet"
    shutil.copytree(MINIMAL, root)
    fleet = json.loads((root / "fleet.json").read_text())
    fleet["secret_recipients"] = recipients
    (root / "fleet.json").write_text(json.dumps(fleet))
    return root


def test_an_invalid_recipient_is_a_finding_naming_its_index(tmp_path: Path) -> None:
    good = str(pyrage.x25519.Identity.generate().to_public())
    root = fleet_with_recipients(tmp_path, [good, "age1invalidrecipient", SSH_KEY, "ssh-rsa AAAAB3NzaC1yc2E"])
    code, out, err = run_cli("validate", str(root), "--json", "--no-cache")
    assert code == 2, err
    found = json.loads(out)["findings"]
    assert [(f["code"], f["file"], f["pointer"]) for f in found] == [
        ("secret-recipient-invalid", "fleet.json", "/secret_recipients/1"),
        ("secret-recipient-invalid", "fleet.json", "/secret_recipients/3"),
    ]
    assert "age1invalidrecipient" in found[0]["message"] and "Bech32" in found[0]["message"]
    assert "ssh-ed25519" in found[1]["message"] and "age-keygen -y" in found[1]["hint"]
    code, out, _ = run_cli("validate", str(root), "--no-cache")
    assert code == 2 and "secret-recipient-invalid: fleet.json#/secret_recipients/1: " in out


def test_valid_recipients_pass(tmp_path: Path) -> None:
    good = str(pyrage.x25519.Identity.generate().to_public())
    root = fleet_with_recipients(tmp_path, [good, SSH_KEY, f"{SSH_KEY} operator@laptop"])
    code, out, err = run_cli("validate", str(root), "--no-cache")
    assert (code, err) == (0, ""), out


def test_validate_imports_no_age_library_without_recipients(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from mcfleet.cli.main import main\n"
        "code = main(['-C', sys.argv[1], 'validate', '--no-cache'])\n"
        "print(code, 'pyrage' in sys.modules)\n"
    )
    without = subprocess.run([sys.executable, "-c", probe, str(MINIMAL)], capture_output=True, text=True, check=True)
    assert without.stdout.splitlines()[-1] == "0 False", without.stdout + without.stderr
    with_bad = fleet_with_recipients(tmp_path, ["age1invalidrecipient"])
    res = subprocess.run([sys.executable, "-c", probe, str(with_bad)], capture_output=True, text=True, check=True)
    assert res.stdout.splitlines()[-1] == "2 True", res.stdout + res.stderr
