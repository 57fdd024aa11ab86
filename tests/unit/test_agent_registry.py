"""The SQLite registry: boot order, transactional replace, desired state, survives reopen."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mcfleet.agent.registry import RUNNING, STOPPED, Entry, Registry
from mcfleet.fleet.models import Service


def svc(name: str, stage: str) -> Service:
    return Service.model_validate({"name": name, "stage": stage, "components": [{"name": name, "image": "x:1"}]})


def test_entries_come_in_boot_order_and_survive_reopen(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.db")
    reg.replace_all([Entry(svc("app", "services"), {"app/0": 10001}), Entry(svc("dns", "foundation"), {})])
    reg.upsert([Entry(svc("proxy", "core"), {"proxy/0": 10002})])
    reg.close()
    again = Registry(tmp_path / "r.db")
    assert [e.name for e in again.entries()] == ["dns", "proxy", "app"]
    assert again.get("app") == Entry(svc("app", "services"), {"app/0": 10001}, RUNNING)
    assert again.set_desired("proxy", STOPPED)
    assert not again.set_desired("nope", STOPPED)
    assert again.get("proxy") is not None and again.get("proxy").desired == STOPPED  # type: ignore[union-attr]


def test_replace_all_is_one_transaction(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.db")
    reg.replace_all([Entry(svc("dns", "foundation"), {})])
    # Two entries with the same name violate the primary key half-way through the insert:
    # the old registry must still be there, whole.
    with pytest.raises(sqlite3.IntegrityError):
        reg.replace_all([Entry(svc("a", "core"), {}), Entry(svc("a", "core"), {})])
    assert [e.name for e in reg.entries()] == ["dns"]


def test_a_registry_that_is_not_a_database_names_its_file_and_what_to_do(tmp_path: Path) -> None:
    """Bytes that are not SQLite's (was: `DatabaseError: file is not a database`, the agent in a restart
    loop, with neither the file nor a way out named)."""
    from mcfleet.agent.registry import RegistryUnreadable

    path = tmp_path / "mcfleet-agent.db"
    path.write_bytes(b"\x8f\x00garbage" * 512)
    with pytest.raises(RegistryUnreadable) as err:
        Registry(path)
    said = str(err.value)
    assert f"the registry {path} is not a database" in said
    assert f"mv {path} {path}.unreadable" in said and "`mcfleet apply` registers the services again" in said
