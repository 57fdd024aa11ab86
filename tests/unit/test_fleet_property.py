"""Fuzzing validate: arbitrary JSON and mutated host/service files never give a traceback.

Whatever the files hold, `mcfleet validate` exits 0 (valid) or 2 with at least one finding
that names a file, and never reaches the CLI's internal-error boundary.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import REPO, run_cli

MINIMAL = REPO / "tests" / "data" / "fleets" / "minimal"
TARGETS = ["fleet.json", "hosts/alpha/host.json", "hosts/edge1/host.json", "hosts/alpha/services/web.json"]
ORIGINAL = {t: json.loads((MINIMAL / t).read_text()) for t in TARGETS}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["mcp", "edge", "master", "nixos", "debian", "l7", "core", "1.1.1.1", "x:latest", "850"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8) | st.sampled_from(["name", "uid", "roles", "users"]), inner, max_size=4),
    ),
    max_leaves=12,
)

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def _fleet() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "fleet"
        shutil.copytree(MINIMAL, root)
        yield root


def _assert_clean_validate(root: Path) -> None:
    code, out, err = run_cli("validate", str(root), "--json")
    assert "internal error" not in err and "Traceback" not in err, err
    assert code in (0, 2), (code, err)
    data = json.loads(out)
    assert data["valid"] is (code == 0)
    if code == 2:
        assert data["findings"]
        for finding in data["findings"]:
            assert finding["code"] and finding["file"] and finding["message"] and finding["hint"]


@SETTINGS
@given(target=st.sampled_from(TARGETS), value=json_values)
def test_arbitrary_json_in_place_of_a_file(target: str, value: Any) -> None:
    with _fleet() as root:
        (root / target).write_text(json.dumps(value))
        _assert_clean_validate(root)


@SETTINGS
@given(target=st.sampled_from(TARGETS), blob=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_arbitrary_bytes_in_place_of_a_file(target: str, blob: bytes) -> None:
    with _fleet() as root:
        (root / target).write_bytes(blob)
        _assert_clean_validate(root)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += _paths(child, (*prefix, index))
    return found


def _mutate(data: Any, path: tuple[Any, ...], action: str, value: Any) -> Any:
    data = copy.deepcopy(data)
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "replace":
        parent[last] = value
    elif isinstance(parent[last], dict):
        parent[last]["extra"] = value
    elif isinstance(parent[last], list):
        parent[last].append(value)
    else:
        parent[last] = [parent[last], value]
    return data


@SETTINGS
@given(
    target=st.sampled_from(TARGETS),
    picks=st.lists(
        st.tuples(st.integers(min_value=0), st.sampled_from(["delete", "replace", "grow"]), json_values),
        min_size=1,
        max_size=3,
    ),
)
def test_mutated_files(target: str, picks: list[tuple[int, str, Any]]) -> None:
    data = ORIGINAL[target]
    for index, action, value in picks:
        paths = _paths(data)
        if not paths:
            break
        data = _mutate(data, paths[index % len(paths)], action, value)
    with _fleet() as root:
        (root / target).write_text(json.dumps(data))
        _assert_clean_validate(root)
