"""The agent's registry: a SQLite file (default /srv/mcp/mcfleet-agent.db) of what should run.

One row per service: its spec (fleet `Service` as JSON), the host ports assigned to its
routes, and whether it should be running.  Boot sequencing and Recover read only this,
never podman, so a node whose podman state is gone still knows what to bring back.
Every change is one transaction (`BEGIN IMMEDIATE`, WAL, synchronous=FULL): a crash leaves
the old registry or the new one, never a mix.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mcfleet.fleet.models import Service

SCHEMA_VERSION = "1"
RUNNING = "running"
STOPPED = "stopped"


@dataclass(frozen=True)
class Entry:
    service: Service
    ports: dict[str, int]
    desired: str = RUNNING

    @property
    def name(self) -> str:
        return self.service.name


class RegistryUnreadable(Exception):
    """The registry file is not a database SQLite can read: what to do is in the message."""


class Registry:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        try:
            self._open()
        except sqlite3.DatabaseError as exc:  # bytes that are not SQLite's (a disk fault, a hand edit)
            self._db.close()
            raise RegistryUnreadable(
                f"the registry {path} is not a database the agent can read ({exc}): move it aside "
                f"(mv {path} {path}.unreadable) and restart the agent; `mcfleet apply` registers the services "
                "again (their containers and volumes are untouched)"
            ) from exc

    def _open(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        with self._tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            db.execute(
                "CREATE TABLE IF NOT EXISTS services ("
                " name TEXT PRIMARY KEY, stage TEXT NOT NULL, stage_order INTEGER NOT NULL,"
                " spec_json TEXT NOT NULL, ports_json TEXT NOT NULL, desired TEXT NOT NULL,"
                " updated_at REAL NOT NULL)"
            )
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @staticmethod
    def _row(entry: Entry) -> tuple[str, str, int, str, str, str, float]:
        spec = entry.service.model_dump_json(by_alias=True, exclude_none=True)
        return (
            entry.name,
            entry.service.stage.value,
            entry.service.stage.order,
            spec,
            json.dumps(entry.ports, sort_keys=True),
            entry.desired,
            time.time(),
        )

    def replace_all(self, entries: list[Entry]) -> None:
        """The node's whole desired set, in one transaction."""
        with self._tx() as db:
            db.execute("DELETE FROM services")
            db.executemany("INSERT INTO services VALUES (?, ?, ?, ?, ?, ?, ?)", [self._row(e) for e in entries])

    def upsert(self, entries: list[Entry]) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO services VALUES (?, ?, ?, ?, ?, ?, ?)", [self._row(e) for e in entries]
            )

    def set_desired(self, name: str, desired: str) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "UPDATE services SET desired = ?, updated_at = ? WHERE name = ?", (desired, time.time(), name)
            )
            return cur.rowcount == 1

    def entries(self) -> list[Entry]:
        """Every service, in boot order (stage, then name)."""
        rows = self._db.execute(
            "SELECT spec_json, ports_json, desired FROM services ORDER BY stage_order, name"
        ).fetchall()
        return [
            Entry(Service.model_validate_json(spec), {k: int(v) for k, v in json.loads(ports).items()}, desired)
            for spec, ports, desired in rows
        ]

    def get(self, name: str) -> Entry | None:
        for entry in self.entries():
            if entry.name == name:
                return entry
        return None
