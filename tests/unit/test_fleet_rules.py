"""validate: one bad fleet per rule code, the minimal and the real fleet valid, rule details."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mcfleet.fleet.findings import RULES
from mcfleet.fleet.load import load_fleet
from mcfleet.fleet.rules import check
from tests.conftest import REPO, run_cli

BAD = REPO / "tests" / "data" / "bad-fleets"
MINIMAL = REPO / "tests" / "data" / "fleets" / "minimal"
BAD_CASES = sorted(p.name for p in BAD.iterdir() if p.is_dir())


def test_every_rule_has_a_bad_fleet() -> None:
    assert sorted(RULES) == BAD_CASES


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_fleet_reports_its_code_file_and_pointer(case: str) -> None:
    expect = json.loads((BAD / case / "expect.json").read_text())
    code, out, err = run_cli("validate", str(BAD / case), "--json")
    assert code == 2, err
    findings = json.loads(out)["findings"]
    assert {f["code"] for f in findings} == {case}
    assert (expect["file"], expect["pointer"]) in {(f["file"], f["pointer"]) for f in findings}
    for f in findings:
        assert f["message"] and f["hint"], f


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_fleet_text_output_names_file_and_hint(case: str) -> None:
    expect = json.loads((BAD / case / "expect.json").read_text())
    code, out, err = run_cli("validate", str(BAD / case))
    assert code == 2
    assert f"{case}: {expect['file']}" in out  # findings on stdout (`| grep` works), the summary on stderr
    assert "hint: " in out
    assert "problem(s) in" in err and "problem(s) in" not in out


def test_minimal_fleet_is_valid() -> None:
    code, out, err = run_cli("validate", str(MINIMAL))
    assert (code, err) == (0, "")
    assert "3 hosts, 2 services valid" in out


def test_the_real_fleet_is_valid() -> None:
    code, out, _err = run_cli("validate", str(REPO), "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["valid"] is True
    assert data["hosts"] == ["hyperborea", "orion", "rift", "svc"]


def test_real_fleet_pins_match_the_seed() -> None:
    loaded = load_fleet(REPO)
    assert loaded.fleet is not None
    assert (loaded.fleet.pins["mcp"].uid, loaded.fleet.pins["mcp"].gid) == (850, 850)
    users = {n: e.host.users["mcp"] for n, e in loaded.hosts.items()}
    assert (users["rift"].uid, users["orion"].uid, users["hyperborea"].uid) == (850, 850, 850)
    # svc's account predates the pin (useradd --system -> 992/991) and must keep it: its podman storage is its own
    assert (users["svc"].uid, users["svc"].gid) == (992, 991)
    assert users["svc"].pin_exception
    assert loaded.hosts["orion"].host.system_accounts["sshd"].uid == 995


def _copy(tmp_path: Path, src: Path = MINIMAL) -> Path:
    dst = tmp_path / "fleet"
    shutil.copytree(src, dst)
    return dst


def _edit(path: Path, change: object) -> None:
    data = json.loads(path.read_text())
    change(data)  # type: ignore[operator]
    path.write_text(json.dumps(data))


def _codes(root: Path) -> list[tuple[str, str, str]]:
    return [(f.code, f.file, f.pointer) for f in check(load_fleet(root))]


def test_pin_exception_keeps_old_ids(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    _edit(
        root / "hosts/edge1/host.json",
        lambda d: d["users"].update(mcp={"uid": 992, "gid": 991, "pin_exception": "useradd --system before the pin"}),
    )
    assert _codes(root) == []


def test_unpinned_host_user_in_dynamic_range(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    _edit(root / "hosts/beta/host.json", lambda d: d["users"].update(backup={"uid": 500, "gid": 30500}))
    assert _codes(root) == [("id-dynamic-range", "hosts/beta/host.json", "/users/backup/uid")]


def test_route_hostname_claimed_by_two_services(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    _edit(
        root / "hosts/alpha/services/dns.json",
        lambda d: d["components"][0].update(routes=[{"port": 53, "mode": "l4", "hostname": "web.svc.example.test"}]),
    )
    assert _codes(root) == [("name-claimed-twice", "hosts/alpha/services/dns.json", "/components/0/routes/0/hostname")]


def test_a_host_route_on_a_name_another_owner_claims(tmp_path: Path) -> None:
    """A host route on a service's name gave that DNS name two A records to write, one per host (apply flipped
    it between them); two hosts' routes on one name the same.  One host's routes may share a name."""
    root = _copy(tmp_path)
    route = {"hostname": "web.svc.example.test", "listener": 9443, "mode": "l7", "backend": "127.0.0.1:3000"}
    _edit(root / "hosts/beta/host.json", lambda d: d.update(routes=[route, {**route, "listener": 9444}]))
    assert _codes(root) == [("name-claimed-twice", "hosts/beta/host.json", "/routes/0/hostname"),
                            ("name-claimed-twice", "hosts/beta/host.json", "/routes/1/hostname")]  # fmt: skip
    [first, _] = check(load_fleet(root))
    assert first.message == "hostname web.svc.example.test of beta's host routes is already claimed by service web"
    other = {**route, "hostname": "git.svc.example.test"}
    _edit(root / "hosts/beta/host.json", lambda d: d.update(routes=[other, {**other, "listener": 9444}]))
    assert _codes(root) == []
    _edit(
        root / "hosts/edge1/host.json", lambda d: d.update(routes=[*d.get("routes", []), {**other, "listener": 9445}])
    )
    [clash] = [f for f in check(load_fleet(root)) if f.code == "name-claimed-twice"]
    assert (clash.file, clash.pointer) == (
        "hosts/edge1/host.json",
        f"/routes/{len(_routes(root, 'edge1')) - 1}/hostname",
    )
    assert clash.message.endswith("is already claimed by beta's host routes"), clash.message


def _routes(root: Path, host: str) -> list[dict[str, object]]:
    return list(json.loads((root / "hosts" / host / "host.json").read_text())["routes"])


def test_two_unnamed_routes_collide_on_port_env(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    web = root / "hosts/alpha/services/web.json"
    _edit(web, lambda d: d["components"][0]["routes"].append({"port": 9090, "mode": "l4"}))
    assert _codes(root) == [("route-duplicate", "hosts/alpha/services/web.json", "/components/0/routes/1/name")]


def test_self_dependency_is_a_cycle(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    _edit(root / "hosts/alpha/services/web.json", lambda d: d.update(depends_on=["dns", "web"]))
    assert _codes(root) == [("stage-cycle", "hosts/alpha/services/web.json", "/depends_on/1")]


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("mcr.svc.mcp.metacircular.net:8443/mcns:v1.2.0", True),
        ("mcr.svc.mcp.metacircular.net:8443/mcns", False),
        ("mcr.svc.mcp.metacircular.net:8443/mcns:latest", False),
        ("docker.io/library/alpine@sha256:" + "a" * 64, True),
        ("alpine", False),
        ("alpine:3.20", True),
        ("localhost:5000/x:", False),
    ],
)
def test_image_pinning(image: str, pinned: bool) -> None:
    from mcfleet.fleet.derive import image_problem

    assert (image_problem(image) is None) is pinned


def test_no_master_is_reported_once(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    _edit(root / "hosts/alpha/host.json", lambda d: d.update(roles=["worker"]))
    assert _codes(root) == [("master-count", "hosts", "")]


def test_json_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    (root / "hosts/beta/host.json").write_text('{\n  "name": "beta",\n  "os": nixos\n}\n')
    findings = check(load_fleet(root))
    syntax = [f for f in findings if f.code == "json-syntax"]
    assert len(syntax) == 1
    assert syntax[0].file == "hosts/beta/host.json"
    assert "line 3, column 9" in syntax[0].message


def test_unknown_field_is_a_schema_finding_with_pointer(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    _edit(root / "hosts/beta/host.json", lambda d: d["ssh"].update(hostkey="x"))
    findings = check(load_fleet(root))
    assert ("schema", "hosts/beta/host.json", "/ssh/hostkey") in {(f.code, f.file, f.pointer) for f in findings}
    assert any(f.message == "unknown field" for f in findings)


def test_missing_fleet_json(tmp_path: Path) -> None:
    code, out, _err = run_cli("validate", str(tmp_path))
    assert code == 2
    assert "missing-file: fleet.json" in out


def test_committed_fleets_equal_their_generator() -> None:
    """tests/data is generated by bad-fleets/_make.py: editing one without the other is caught here."""
    import copy
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_bad_fleets", BAD / "_make.py")
    assert spec and spec.loader
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)

    def on_disk(root: Path) -> dict[str, object]:
        found: dict[str, object] = {}
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            text = path.read_text()
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                data = None
            # the generator writes JSON as json.dumps(indent=2); any other text (a repeated key) stays text
            found[str(path.relative_to(root))] = text if json.dumps(data, indent=2) + "\n" != text else data
        return found

    assert on_disk(MINIMAL) == make.minimal()
    for code, (apply, file, pointer) in make.DEFECTS.items():
        files = copy.deepcopy(make.minimal())
        apply(files)
        files["expect.json"] = {"code": code, "file": file, "pointer": pointer}
        assert on_disk(BAD / code) == files, code


def test_bind_other_host_suggests_a_move_only_to_a_host_that_runs_containers() -> None:
    """The hint said "or move dns.json to hosts/edge1/services/" for an edge-only owner, where the move is
    refused in turn (edge-containers)."""
    findings = {f.pointer: f for f in check(load_fleet(BAD / "bind-other-host")) if f.code == "bind-other-host"}
    assert findings["/components/0/routes/0/bind/1"].hint == (
        "use one of alpha's addresses (10.0.0.1), or move web.json to hosts/beta/services/"
    )
    assert findings["/components/0/publish/0/host_ip"].hint == (
        "use one of alpha's addresses (10.0.0.1); edge1 is edge-only and runs no containers"
    )


def test_a_provider_field_error_points_into_fleet_json_without_the_kind_tag(tmp_path: Path) -> None:
    """pydantic's error location holds the tagged union's tag (`providers.dns.rfc2136.port`)."""
    root = tmp_path / "fleet"
    shutil.copytree(MINIMAL, root)
    fleet = json.loads((root / "fleet.json").read_text())
    fleet["providers"] = {
        "dns": {"kind": "rfc2136", "server": "10.0.0.53", "port": "fifty-three", "key_name": "k", "key_file": "/k"},
        "route": {"kind": "mc-proxy", "socket": "/srv/mc-proxy/mc-proxy.sock", "nope": 1},
    }
    (root / "fleet.json").write_text(json.dumps(fleet))
    found = {(f.file, f.pointer) for f in load_fleet(root).findings}
    assert found == {("fleet.json", "/providers/dns/port"), ("fleet.json", "/providers/route/nope")}


@pytest.mark.parametrize("kind", ["rfc2136", "mcns"])
def test_a_dns_ttl_over_rfc_2181s_limit_is_a_schema_finding_not_a_failed_apply(tmp_path: Path, kind: str) -> None:
    """2**31 passed validation and failed apply's update ('I' format requires 0 <= number <= 4294967295)."""
    root = tmp_path / "fleet"
    shutil.copytree(MINIMAL, root)
    fleet = json.loads((root / "fleet.json").read_text())
    dns = {"server": "10.0.0.53", "key_name": "k", "key_file": "/k"} if kind == "rfc2136" else {
        "url": "https://mcns.example.test", "token_file": "/t"}  # fmt: skip
    fleet["providers"] = {"dns": {"kind": kind, **dns, "ttl": 2**31}}
    (root / "fleet.json").write_text(json.dumps(fleet))
    [finding] = load_fleet(root).findings
    assert (finding.code, finding.file, finding.pointer) == ("schema", "fleet.json", "/providers/dns/ttl")
    assert "2147483647" in finding.message
    fleet["providers"]["dns"]["ttl"] = 2**31 - 1
    (root / "fleet.json").write_text(json.dumps(fleet))
    assert load_fleet(root).findings == []


def test_template_unknown_names_what_it_fills_and_the_close_name() -> None:
    [finding] = check(load_fleet(BAD / "template-unknown"))
    assert finding.message == (
        "web's template files/web/web.toml uses {{ nope }}, {{ port.web/9 }}, which mcfleet does not fill"
    )
    assert finding.hint == (
        "did you mean {{ port.web/0 }}? (it fills: address, host, hostname, port.web/0, service, zone)"
    )
