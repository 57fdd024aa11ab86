"""The committed JSON Schemas equal the models', and the real files validate against them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from mcfleet.fleet.schema import render_schemas
from tests.conftest import REPO, run_cli

SCHEMAS = REPO / "schemas"


def test_committed_schemas_do_not_drift() -> None:
    rendered = render_schemas()
    assert sorted(p.name for p in SCHEMAS.glob("*.schema.json")) == sorted(rendered)
    for name, text in rendered.items():
        assert (SCHEMAS / name).read_text() == text, f"schemas/{name} is stale: run `mcfleet schema dump`"


def test_schema_dump_check_passes_on_the_repo() -> None:
    code, out, _err = run_cli("schema", "dump", "--check", "--out", str(SCHEMAS))
    assert (code, out.strip()) == (0, "schemas up to date")


def test_schema_dump_check_fails_on_drift(tmp_path: Path) -> None:
    (tmp_path / "host.schema.json").write_text("{}\n")
    code, _out, err = run_cli("schema", "dump", "--check", "--out", str(tmp_path))
    assert code == 1
    assert "host.schema.json" in err


def _files() -> list[tuple[str, Path]]:
    found = [("fleet.schema.json", REPO / "fleet.json")]
    found += [("host.schema.json", p) for p in sorted(REPO.glob("hosts/*/host.json"))]
    found += [("service.schema.json", p) for p in sorted(REPO.glob("hosts/*/services/*.json"))]
    return found


@pytest.mark.parametrize(("schema", "path"), _files(), ids=lambda v: str(v).rsplit("/", 3)[-1])
def test_real_files_match_their_schema_and_link_it(schema: str, path: Path) -> None:
    data = json.loads(path.read_text())
    jsonschema.Draft202012Validator(json.loads((SCHEMAS / schema).read_text())).validate(data)
    # `$schema` points at the committed schema, relative to the file, so editors validate it
    assert (path.parent / data["$schema"]).resolve() == (SCHEMAS / schema).resolve()


def test_schema_dump_check_json_reports_stale_files(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    code, out, _err = run_cli("schema", "dump", "--check", "--out", str(tmp_path), "--json")
    assert code == 1
    assert json.loads(out)["stale"] == ["fleet.schema.json", "host.schema.json", "service.schema.json"]
    code, out, _err = run_cli("schema", "dump", "--out", str(tmp_path), "--json")
    assert code == 0 and len(json.loads(out)["written"]) == 3
    code, out, _err = run_cli("schema", "dump", "--check", "--out", str(tmp_path), "--json")
    assert code == 0 and json.loads(out) == {"dir": str(tmp_path), "stale": [], "up_to_date": True}


def test_dump_into_a_file_says_so(tmp_path: Path) -> None:
    """--out naming a file (or a path under one) is an input error naming it (was an internal FileExistsError)."""
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "schemas"):
        code, _out, err = run_cli("schema", "dump", "--out", str(out))
        assert code == 2, err
        assert f"invalid input: --out {out}: {tmp_path / 'file'} is a file, not a folder" in err
    assert (tmp_path / "file").read_text() == "x"


def test_a_subordinate_id_range_must_end_at_a_valid_id(tmp_path: Path) -> None:
    """32-bit ids, 4294967295 being (uid_t)-1: a range past it would be written to /etc/subuid as given."""
    import shutil

    from mcfleet.fleet.load import load_fleet

    root = tmp_path / "fleet"
    shutil.copytree(Path(__file__).parent.parent / "data" / "fleets" / "minimal", root)
    host_file = root / "hosts" / "alpha" / "host.json"
    host = json.loads(host_file.read_text())
    host["users"]["mcp"]["subuid"] = {"start": 4294901760, "count": 65536}  # ends at 4294967295
    host_file.write_text(json.dumps(host))
    [finding] = load_fleet(root).findings
    assert (finding.code, finding.pointer) == ("schema", "/users/mcp/subuid")
    assert "past the largest id 4294967294" in finding.message
    host["users"]["mcp"]["subuid"] = {"start": 4294901759, "count": 65536}
    host_file.write_text(json.dumps(host))
    assert load_fleet(root).findings == []
