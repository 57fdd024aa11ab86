"""The demo's set-up run again on the same lab changes nothing: sni's certificate and key (an age secret)
are kept while they still serve, and made anew when they do not (another operator identity, a host key
that changed, a certificate near its end).  Real age encryption (pyrage), real X.509 (cryptography)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import pyrage  # type: ignore[import-untyped]
import pytest

from mcfleet.fleet.load import load_fleet
from mcfleet.fleet.rules import check
from mcfleet.fleet.secrets import decrypt_secret, secret_paths
from mcfleet.lab import edgedemo
from mcfleet.lab.edgedemo import SNI_CERT_SOURCE, SNI_SECRET, sni_material, sni_service

MINIMAL = Path(__file__).parent.parent / "data" / "fleets" / "minimal"
HOSTNAME = "sni.svc.example.test"


def _host_key(folder: Path, name: str) -> str:
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(key)], check=True)
    return " ".join(key.with_suffix(".pub").read_text().split()[:2])


def _operator(path: Path) -> str:
    identity = pyrage.x25519.Identity.generate()
    path.write_text(f"{identity}\n")
    path.chmod(0o600)  # an identity others can read is refused
    return str(identity.to_public())


@pytest.fixture(name="fleet")
def fleet_fixture(tmp_path: Path) -> tuple[Path, Path]:
    """The minimal fleet with alpha running sni (its files: tls.pem and the secret tls.key), an operator
    identity among the recipients, and alpha's real host key.  Returns (root, operator identity file)."""
    root = tmp_path / "fleet"
    shutil.copytree(MINIMAL, root)
    ident = tmp_path / "age.key"
    fleet = json.loads((root / "fleet.json").read_text())
    fleet["secret_recipients"] = [_operator(ident)]
    (root / "fleet.json").write_text(json.dumps(fleet))
    _set_host_key(root, _host_key(tmp_path, "alpha_host"))
    (root / "hosts" / "alpha" / "services" / "sni.json").write_text(
        json.dumps(sni_service("registry.example.test/demo/sni:1", "192.0.2.10"))
    )
    return root, ident


def _set_host_key(root: Path, public: str) -> None:
    path = root / "hosts" / "alpha" / "host.json"
    host = json.loads(path.read_text())
    host["ssh"]["host_key"] = public
    path.write_text(json.dumps(host))


def _material(root: Path) -> tuple[bytes, bytes]:
    age, _ = secret_paths(root, SNI_SECRET)
    return (root / SNI_CERT_SOURCE).read_bytes(), age.read_bytes()


def test_a_second_run_keeps_the_certificate_and_the_secret(fleet: tuple[Path, Path]) -> None:
    root, ident = fleet
    assert sni_material(root, HOSTNAME, ident) is True
    made = _material(root)
    assert check(load_fleet(root)) == []  # the fleet validates with them (the secret exists, to its recipients)
    assert sni_material(root, HOSTNAME, ident) is False
    assert _material(root) == made  # byte for byte: the next plan has nothing to change on sni


def test_the_material_is_made_anew_when_it_no_longer_serves(
    fleet: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, ident = fleet
    sni_material(root, HOSTNAME, ident)

    # a lab brought up again: the worker has a new host key, the secret is not encrypted to it
    before = _material(root)
    _set_host_key(root, _host_key(tmp_path, "alpha_host_2"))
    assert sni_material(root, HOSTNAME, ident) is True
    assert _material(root)[1] != before[1]

    # another operator identity (the lab's state was removed): it cannot decrypt the old key
    other = tmp_path / "other.key"
    fleet = json.loads((root / "fleet.json").read_text())
    fleet["secret_recipients"] = [_operator(other)]
    (root / "fleet.json").write_text(json.dumps(fleet))
    assert sni_material(root, HOSTNAME, other) is True
    key = decrypt_secret(root, SNI_SECRET, [pyrage.x25519.Identity.from_str(other.read_text().strip())])
    assert b"PRIVATE KEY" in key

    # another zone's name
    assert sni_material(root, "sni.other.example.test", other) is True

    # a certificate with less than 30 days left
    monkeypatch.setattr(edgedemo, "SNI_CERT_MIN_LEFT", dt.timedelta(days=366))
    assert sni_material(root, "sni.other.example.test", other) is True


def test_a_certificate_whose_key_is_not_the_secret_is_made_anew(fleet: tuple[Path, Path]) -> None:
    root, ident = fleet
    sni_material(root, HOSTNAME, ident)
    cert, _ = edgedemo.self_signed(HOSTNAME)  # same name, another key
    (root / SNI_CERT_SOURCE).write_bytes(cert)
    assert sni_material(root, HOSTNAME, ident) is True
    assert sni_material(root, HOSTNAME, ident) is False


def _recorded_lab(tmp_path: Path) -> Path:
    """A lab folder as `lab up` records it (two full nodes, Knot), with the demo set up once: the
    operator identity and sni's files exist.  No process runs: --values reads, it never starts one."""
    lab = tmp_path / "lab"
    node = {"kind": "full", "ssh_port": 22, "host_key": "ssh-ed25519 AAAA", "arch": "amd64", "login": "root",
            "ns_pid": 1, "main_pid": 1, "sshd_pid": 1, "podman": True}  # fmt: skip
    info = {
        "zone": "svc.mcp.example.test",
        "nodes": {
            name: {
                **node,
                "name": name,
                "index": i,
                "address": f"10.77.9.{11 + i}",
                "netns": f"n{i}",
                "dir": str(lab / ".lab" / "nodes" / name),
            }
            for i, name in enumerate(("full1", "full2"))
        },
        "peers": {"knot": {"server": "127.0.0.1", "port": 40423}},
    }
    (lab / ".lab" / "edgedemo" / "lab").mkdir(parents=True)
    (lab / ".lab" / "state.json").write_text(json.dumps({"version": 1, "resources": [], "info": info}))
    (lab / ".lab" / "edgedemo" / "lab" / "age.key").write_text("AGE-SECRET-KEY-1...\n")
    (lab / "files" / "sni").mkdir(parents=True)
    (lab / "files" / "sni" / "tls.pem").write_text("a certificate the operator rotated (29 days left)\n")
    (lab / "fleet.json").write_text('{"providers": {"dns": {"key_file": "/the/operators/own/key"}}}\n')
    return lab


def _tree(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_values_print_the_demos_variables_and_write_nothing(tmp_path: Path) -> None:
    """Seen on the demo lab: the command the demo prints for another shell ("changing nothing") ran the
    set-up again, which made sni's certificate and key anew (the rotated certificate had under 30 days
    left: the operator's new key was replaced without a word) and set the fleet's providers back."""
    import sys

    lab = _recorded_lab(tmp_path)
    before = _tree(lab)
    done = subprocess.run([sys.executable, "-m", "mcfleet.lab.edgedemo", "--values", str(lab)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    values = dict(line.split("=", 1) for line in done.stdout.splitlines())
    assert values["WORKER_NAME"] == "full1" and values["EDGE"] == "10.77.9.12" and values["KNOT_PORT"] == "40423"
    assert values["MCFLEET_AGE_IDENTITY"] == str(lab / ".lab" / "edgedemo" / "lab" / "age.key")
    assert values["SNI"] == "sni.svc.mcp.example.test" and values["SNI_CA"] == str(lab / SNI_CERT_SOURCE)
    assert _tree(lab) == before
    # a lab where the demo was never set up: said, and still nothing written
    (lab / ".lab" / "edgedemo" / "lab" / "age.key").unlink()
    again = subprocess.run([sys.executable, "-m", "mcfleet.lab.edgedemo", "--values", str(lab)],
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert again.returncode == 1 and "the edge demo is not set up in" in again.stderr
    assert "run scripts/lab-demo.sh first" in again.stderr
