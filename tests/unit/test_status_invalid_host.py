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


def test_a_role_selector_shows_a_broken_host_json_it_cannot_tell(fleet: Path, observed: list[list[str]]) -> None:
    """`--on @worker`: beta's roles cannot be read (its host.json does not load), its folder is there: a row
    names its file rather than leaving it out (was: only a warning line, and no entry in --json).  Left out
    by name (`!beta`), it has no row; a host that loads and does not match has none either."""
    path = fleet / "hosts" / "beta" / "host.json"
    host = json.loads(path.read_text())
    host["rolse"] = host.pop("roles")
    path.write_text(json.dumps(host))
    res = run(fleet, "--on", "@worker", "--json")
    assert res.exit_code == 1, res.output
    rows = {r["host"]: r for r in json.loads(res.stdout)["hosts"]}
    assert "beta" in rows and rows["beta"]["cause"] == "invalid" and rows["beta"]["file"] == "hosts/beta/host.json"
    assert "edge1" not in rows  # loads, and is no worker
    table_out = run(fleet, "--on", "@worker")
    beta = next(line for line in table_out.stdout.splitlines() if line.startswith("beta "))
    assert "not observed: hosts/beta/host.json#/rolse: unknown field 'rolse'" in beta
    assert beta.endswith("run `mcfleet validate`") and table_out.exit_code == 1
    without = run(fleet, "--on", "@worker,!beta", "--json")
    assert "beta" not in {r["host"] for r in json.loads(without.stdout)["hosts"]}
    assert without.exit_code == 1  # it does not load all the same
    assert "beta" in {r["host"] for r in json.loads(run(fleet, "--on", "!edge1", "--json").stdout)["hosts"]}


def _action(host: str, phase: str, kind: str, subject: str) -> Any:
    from mcfleet.phase import Phase
    from mcfleet.plan.model import Action

    return Action(host=host, phase=Phase(phase), kind=kind, subject=subject)  # type: ignore[arg-type]


def test_removals_are_the_changes_held_back() -> None:
    from mcfleet.cli.commands_status import held_back_changes

    moved_away = [
        _action("full2", "deploy", "delete", "service api"),
        _action("full2", "route", "delete", "route 443/api.svc.mcp.example.test"),
        _action("full2", "manifest", "update", "manifest"),
    ]
    assert held_back_changes(moved_away) == (
        "full2/deploy/service api",
        "full2/route/route 443/api.svc.mcp.example.test",
        "full2/manifest/manifest",
    )
    with_a_change = [*moved_away, _action("full2", "deploy", "update", "service web")]
    assert held_back_changes(with_a_change) == (
        "full2/deploy/service api",
        "full2/route/route 443/api.svc.mcp.example.test",
    )
    assert held_back_changes([_action("full2", "manifest", "update", "manifest")]) == ()


def test_a_service_moved_to_a_broken_host_is_no_drift_on_the_host_it_left(
    fleet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """alpha's web moved to beta, whose host.json does not load: planned without beta, web is "no longer
    declared" and alpha would show DRIFT yes (the QA's full2: "yes (3 changes)").  Those removals are held
    back: alpha has no drift, its note and the warning say what was held back, the exit is 1 (beta)."""
    from pydantic import TypeAdapter

    import mcfleet.apply.status as apply_status
    from mcfleet.cli import commands_plan
    from mcfleet.observe.facts import HostFacts
    from mcfleet.plan import planner
    from mcfleet.plan.model import Plan
    from tests.unit.test_plan_cases import BASE_FACTS

    # the plan made without beta (faked: the hosts are not reached): what a service moved from alpha to beta
    # leaves on alpha, as the QA's lab showed on full2
    removals = [
        _action("alpha", "deploy", "delete", "service web"),
        _action("alpha", "route", "delete", "route 443/web.svc.example.test"),
        _action("alpha", "manifest", "update", "manifest"),
    ]

    async def plan_fleet(_loaded: Any, names: list[str], **kwargs: Any) -> tuple[Plan, dict[str, Any]]:
        for name in names:
            kwargs["connected"](name)
        facts = {n: TypeAdapter(HostFacts).validate_python({"host": n, **BASE_FACTS}) for n in names}
        return Plan(hosts=names, actions=[a for a in removals if a.host in names]), facts

    class _Agent:
        def __init__(self, host: str) -> None:
            self.host, self.version, self.health = host, "0.1.0", "SERVING"

    async def host_status(_pool: Any, entry: Any, **_kw: Any) -> _Agent:
        return _Agent(entry.host.name)

    async def health_checks(_pool: Any, _entry: Any) -> tuple[None, None]:
        return None, None

    monkeypatch.setattr(commands_plan, "bundle_hashes", lambda _loaded, _names: ({}, None, None))
    monkeypatch.setattr(planner, "plan_fleet", plan_fleet)
    monkeypatch.setattr(apply_status, "host_status", host_status)
    monkeypatch.setattr(commands_status, "health_checks", health_checks)

    healthy = json.loads(run(fleet, "--json").stdout)  # every file loads: the same removals are drift
    assert next(r for r in healthy["hosts"] if r["host"] == "alpha")["changes"] == 3

    path = fleet / "hosts" / "beta" / "host.json"
    host = json.loads(path.read_text())
    host["rolse"] = host.pop("roles")
    path.write_text(json.dumps(host))
    res = run(fleet, "--json")
    assert res.exit_code == 1, res.output
    rows = {r["host"]: r for r in json.loads(res.stdout)["hosts"]}
    assert rows["alpha"]["drift"] is False and rows["alpha"]["changes"] == 0
    assert rows["alpha"]["held_back"] == [a.id for a in removals]
    assert rows["beta"]["cause"] == "invalid"
    text = run(fleet, "--on", "@worker")
    alpha = next(line for line in text.stdout.splitlines() if line.startswith("alpha "))
    assert alpha.split()[5] == "no" and "3 change(s) held back while a host file does not load" in alpha
    assert "3 change(s) of the other hosts held back from DRIFT" in text.stderr
    assert any(line.startswith("beta ") for line in text.stdout.splitlines())
