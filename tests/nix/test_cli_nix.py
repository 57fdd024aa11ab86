"""T1: `mcfleet nix check|host|attrs` (commands_nix) on the real fleet and a bad fleet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mcfleet.cli import commands_nix
from mcfleet.errors import SelectionError
from mcfleet.fleet.findings import RULES
from mcfleet.nix.attrs import ATTRS

pytestmark = pytest.mark.nix

REPO = Path(__file__).resolve().parents[2]
BAD = REPO / "tests" / "data" / "bad-fleets"


def _app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    commands_nix.register(app)
    return app


def test_nix_check_passes_on_the_real_fleet(nix_bin: str) -> None:
    res = CliRunner().invoke(_app(), ["nix", "check", str(REPO)])
    assert res.exit_code == 0, res.output
    # every rule code but the Python-only ones (file reading and schema; port placement)
    from tests.nix.test_lib_agreement import LOAD_LEVEL, PYTHON_ONLY

    assert res.output.startswith(f"ok: nix/lib finds no problem ({len(RULES) - len(LOAD_LEVEL | PYTHON_ONLY)} rules)")


def test_nix_check_reports_the_finding_and_exits_2(nix_bin: str) -> None:
    res = CliRunner().invoke(_app(), ["nix", "check", str(BAD / "pin-mismatch"), "--json"])
    assert res.exit_code == 2
    data = json.loads(res.stdout)
    assert data["valid"] is False
    assert [(f["code"], f["file"], f["pointer"]) for f in data["findings"]] == [
        ("pin-mismatch", "hosts/edge1/host.json", "/users/mcp/uid")
    ]


def test_nix_host_shows_the_module_values() -> None:
    res = CliRunner().invoke(_app(), ["nix", "host", "rift", "--root", str(REPO), "--json"])
    assert res.exit_code == 0, res.output
    values = json.loads(res.stdout)
    assert values["users"]["mcp"]["uid"] == 850
    assert values["agentUnit"]["execStart"] == "/srv/mcp/mcp-agent"
    res = CliRunner().invoke(_app(), ["nix", "host", "nope", "--root", str(REPO)])
    assert isinstance(res.exception, SelectionError)
    assert "rift" in (res.exception.hint or "")


def test_nix_host_text_says_where_the_fleet_zone_goes() -> None:
    """rift resolves with systemd-resolved: its zone goes to the fleet's servers per link; the text
    said only `nameservers: 1.1.1.1 8.8.8.8`, as if the fleet's resolvers were not used."""
    rift = CliRunner().invoke(_app(), ["nix", "host", "rift", "--root", str(REPO)])
    assert rift.exit_code == 0, rift.output
    assert "resolver: systemd-resolved\n" in rift.output
    assert "  zone svc.mcp.metacircular.net: 192.168.88.181 100.95.252.120 (per link" in rift.output
    assert "  other names: 1.1.1.1 8.8.8.8\n" in rift.output
    orion = CliRunner().invoke(_app(), ["nix", "host", "orion", "--root", str(REPO)])
    assert "resolver: resolv.conf\n  nameservers, in order: 192.168.88.181 1.1.1.1 8.8.8.8 (options " in orion.output


def test_nix_attrs_lists_the_registry() -> None:
    res = CliRunner().invoke(_app(), ["nix", "attrs", "--json"])
    assert res.exit_code == 0
    assert set(json.loads(res.stdout)) == set(ATTRS)


@pytest.mark.parametrize("code", ["json-syntax", "schema"])
def test_nix_check_names_a_file_nix_cannot_read_as_validate_does(nix_bin: str, code: str) -> None:
    """A file that is not JSON, or misses a field its schema requires: the finding with its file and pointer
    (was: Nix's own error, `attribute 'components' missing at …/nix/lib/load.nix:127`, and no JSON)."""
    expect = json.loads((BAD / code / "expect.json").read_text())
    res = CliRunner().invoke(_app(), ["nix", "check", str(BAD / code), "--json"])
    assert res.exit_code == 2, res.output
    data = json.loads(res.stdout)
    assert data["valid"] is False and data["evaluated"] is False
    assert (expect["code"], expect["file"], expect["pointer"]) in [
        (f["code"], f["file"], f["pointer"]) for f in data["findings"]
    ]
    res = CliRunner().invoke(_app(), ["nix", "check", str(BAD / code)])
    assert res.exit_code == 2 and "before nix/lib can read them" in res.output and "load.nix" not in res.output
