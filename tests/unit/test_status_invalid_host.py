"""`mcfleet status` with a host file that does not load: the hosts that load are observed, the broken one is
a row naming its file and first problem, and the exit is 1 (was: exit 2, "invalid fleet", no table)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mcfleet.cli import commands_status
from mcfleet.cli.app import app
from mcfleet.cli.commands_status import HostStatus
from mcfleet.errors import FleetInvalid, SelectionError

MINIMAL = Path(__file__).resolve().parent.parent / "data" / "fleets" / "minimal"


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    root = tmp_path / "fleet"
    shutil.copytree(MINIMAL, root)
    return root


@pytest.fixture
def observed(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """collect() replaced by one that finds every host it is given healthy; returns the names it was given."""
    calls: list[list[str]] = []

    def collect(_loaded: Any, names: list[str], _timeout: float) -> tuple[list[HostStatus], dict[str, Any]]:
        calls.append(list(names))
        rows = [HostStatus(n, True, agent_health="SERVING", services_up=0, drift=False) for n in names]
        return rows, {}

    monkeypatch.setattr(commands_status, "collect", collect)
    return calls


def run(root: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["-C", str(root), "status", *args])


def break_json(path: Path) -> None:
    path.write_text('{"name": "x",\n  "os": "debian",,\n}\n')


def test_a_host_json_that_does_not_load_is_a_row_and_the_others_are_observed(
    fleet: Path, observed: list[list[str]]
) -> None:
    healthy = run(fleet)
    assert healthy.exit_code == 0, healthy.output  # the same fleet, every file loading: all ok
    break_json(fleet / "hosts" / "beta" / "host.json")
    res = run(fleet)
    assert res.exit_code == 1, res.output
    assert observed[-1] == ["alpha", "edge1"]
    lines = res.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["alpha", "beta", "edge1"]
    beta = next(line for line in lines if line.startswith("beta "))
    assert beta.split()[1] == "?"  # not tried: without its host.json there is no address
    assert "not observed: hosts/beta/host.json: invalid JSON at line 2, column 18" in beta
    assert beta.endswith("run `mcfleet validate`")
    assert "invalid fleet" not in res.stderr
    assert "1 host(s) not observed" in res.stderr and "beta (hosts/beta/host.json)" in res.stderr


def test_json_carries_the_broken_host_with_its_file_and_error(fleet: Path, observed: list[list[str]]) -> None:
    break_json(fleet / "hosts" / "beta" / "host.json")
    res = run(fleet, "--json")
    assert res.exit_code == 1, res.output
    data = json.loads(res.stdout)
    rows = {r["host"]: r for r in data["hosts"]}
    assert list(rows) == ["alpha", "beta", "edge1"]
    beta = rows["beta"]
    assert beta["cause"] == "invalid" and beta["file"] == "hosts/beta/host.json"
    assert beta["error"].startswith("hosts/beta/host.json: invalid JSON at line 2, column 18: ")
    assert beta["reachable"] is False and beta["drift"] is None and beta["ok"] is False
    assert rows["alpha"]["ok"] and rows["alpha"]["file"] is None
    assert data["ok"] is False and data["gone"] == {} and data["held_back"] == []


def test_the_masters_schema_error_holds_back_the_rules_it_causes(fleet: Path, observed: list[list[str]]) -> None:
    """A misspelt `roles` in the master's host.json also makes "no master" (a rule): that one does not refuse
    the status of the hosts that load, and the row shows the typo with "did you mean"."""
    path = fleet / "hosts" / "alpha" / "host.json"
    host = json.loads(path.read_text())
    host["rolse"] = host.pop("roles")
    path.write_text(json.dumps(host))
    res = run(fleet, "--json")
    assert res.exit_code == 1, res.output
    data = json.loads(res.stdout)
    alpha = next(r for r in data["hosts"] if r["host"] == "alpha")
    assert (
        alpha["error"]
        == "hosts/alpha/host.json#/rolse: unknown field 'rolse': did you mean 'roles'? (roles is required)"
    )
    assert data["held_back"] and all(f["code"] not in ("schema", "json-syntax") for f in data["held_back"])
    assert observed[-1] == ["beta", "edge1"]
    assert "finding(s) of the fleet rules held back" in run(fleet).stderr


def test_a_service_file_that_does_not_load_leaves_its_host_unobserved(fleet: Path, observed: list[list[str]]) -> None:
    """Its host loads without that service: planned like that it would show the service as one to remove."""
    break_json(fleet / "hosts" / "alpha" / "services" / "web.json")
    res = run(fleet)
    assert res.exit_code == 1, res.output
    assert observed[-1] == ["beta", "edge1"]
    alpha = next(line for line in res.stdout.splitlines() if line.startswith("alpha "))
    assert "not observed: hosts/alpha/services/web.json: invalid JSON" in alpha


def test_a_fleet_json_that_does_not_load_still_refuses(fleet: Path, observed: list[list[str]]) -> None:
    break_json(fleet / "fleet.json")
    break_json(fleet / "hosts" / "beta" / "host.json")
    res = run(fleet)
    assert isinstance(res.exception, FleetInvalid), res.output  # the CLI's exit 2, "invalid fleet: …"
    assert observed == []


def test_a_broken_host_is_not_reported_gone(fleet: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan sees a host that did not load as absent from hosts/; its folder is there: it is not gone (and
    `mcfleet forget` is not what to do about it)."""
    from mcfleet.plan.model import GoneHost

    def collect(_loaded: Any, names: list[str], _timeout: float) -> tuple[list[HostStatus], dict[str, Any]]:
        rows = [HostStatus(n, True, agent_health="SERVING", services_up=0, drift=False) for n in names]
        return rows, {"beta": GoneHost(services=["web"]), "old": GoneHost(services=["db"])}

    monkeypatch.setattr(commands_status, "collect", collect)
    break_json(fleet / "hosts" / "beta" / "host.json")
    res = run(fleet)
    assert "old: gone from hosts/" in res.stdout and "beta: gone" not in res.stdout, res.stdout
    assert list(json.loads(run(fleet, "--json").stdout)["gone"]) == ["old"]


def test_a_selection_says_a_broken_host_and_fails_the_exit(fleet: Path, observed: list[list[str]]) -> None:
    """`--on alpha` shows alpha; a broken beta is said on stderr, not a row, and the exit is 1: `--on @worker`
    cannot tell whether beta is a worker, and a monitor must not read OK.  A selector naming beta is refused
    as for every command (it does not load)."""
    break_json(fleet / "hosts" / "beta" / "host.json")
    res = run(fleet, "--on", "alpha")
    assert res.exit_code == 1, res.output
    assert [line.split()[0] for line in res.stdout.splitlines()[1:]] == ["alpha"]
    assert "beta (hosts/beta/host.json)" in res.stderr
    named = run(fleet, "--on", "beta")
    assert isinstance(named.exception, SelectionError), named.output  # exit 2
    assert named.exception.message == "host 'beta' is left out: hosts/beta/host.json has problems"


def test_watch_redraws_with_a_broken_host(
    fleet: Path, observed: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import time as time_module

    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) % 2 == 0:  # the second sleep of each run: Ctrl-C
            raise KeyboardInterrupt

    monkeypatch.setattr(time_module, "sleep", sleep)
    break_json(fleet / "hosts" / "beta" / "host.json")
    res = run(fleet, "--watch", "--interval", "1")
    assert res.exit_code == 130, res.output
    assert res.stdout.count("mcfleet status — ") == 2
    assert res.stdout.count("not observed: hosts/beta/host.json") == 2
    watched = run(fleet, "--watch", "--json", "--interval", "1")
    docs = [json.loads(line) for line in watched.stdout.splitlines() if line.strip()]
    assert docs and all(d["hosts"][1]["cause"] == "invalid" for d in docs), watched.stdout
