"""The lab's fleet folder: a service file a person edited is left as it is, and when it is what does not
validate, the error says it is theirs (was: "this is a bug in mcfleet lab; please report it")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcfleet.errors import LabError
from mcfleet.lab.fleetdir import write_fleet_dir
from mcfleet.lab.nodes import LabNode

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def _write(dest: Path) -> Path:
    node = LabNode(name="full1", kind="full", index=0, address="10.77.9.13", ssh_port=22, netns="mcl-test",
                   host_key=KEY, dir=str(dest / "n"), ns_pid=1, main_pid=1, sshd_pid=None, podman=True)  # fmt: skip
    peers = {"registry": {"address": "10.77.9.1:5000"}}
    return write_fleet_dir(dest, zone="svc.lab.test", nodes=[node], peers=peers, client_key=dest / "id",
                           account_key=None, nameserver="10.77.9.1", services=True)  # fmt: skip


def test_a_users_own_service_file_that_does_not_validate_is_named_as_theirs(tmp_path: Path) -> None:
    root = _write(tmp_path)
    hello = root / "hosts" / "full1" / "services" / "hello.json"
    svc = json.loads(hello.read_text())
    svc["description"] = "mine now"
    svc["components"][0]["routes"][0]["public"] = True  # no host carries public traffic in this lab
    hello.write_text(json.dumps(svc))
    with pytest.raises(LabError) as caught:
        _write(tmp_path)
    assert "hosts/full1/services/hello.json" in caught.value.message
    assert caught.value.hint == (f"hosts/full1/services/hello.json is not the lab's demo file (the lab leaves it "
                                 f"as it is): fix it, or move it out of {tmp_path}")  # fmt: skip
    assert json.loads(hello.read_text())["description"] == "mine now"  # left as it was
