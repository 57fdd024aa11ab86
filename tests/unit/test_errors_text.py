"""Every error class's text: message, location and hint all reach the user, with its exit code."""

from __future__ import annotations

import inspect

import pytest

from mcfleet import errors
from mcfleet.errors import FleetInvalid, McfleetError

CLASSES = sorted(
    (c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, McfleetError)),
    key=lambda c: c.__name__,
)


def _make(cls: type[McfleetError]) -> McfleetError:
    if cls is FleetInvalid:
        return FleetInvalid([object(), object()], root="/srv/fleet")
    return cls("the thing failed", location="hosts/rift/host.json#/users/mcp/uid", hint="do the other thing")


def test_all_error_classes_are_covered() -> None:
    assert {c.__name__ for c in CLASSES} >= {"McfleetError", "InputError", "FleetInvalid", "SelectionError"}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_error_text_has_message_location_and_hint(cls: type[McfleetError]) -> None:
    err = _make(cls)
    text = err.format()
    assert text == str(err)
    assert text.startswith(f"{cls.kind}: ")
    assert err.location and f": {err.location}: " in text.splitlines()[0]
    assert err.message in text.splitlines()[0]
    assert err.hint and text.splitlines()[1] == f"  hint: {err.hint}"
    assert err.exit_code in (errors.EXIT_FAILURE, errors.EXIT_INVALID, errors.EXIT_INTERRUPTED)
    data = err.as_dict()
    assert (data["message"], data["location"], data["hint"], data["exit_code"]) == (
        err.message,
        err.location,
        err.hint,
        err.exit_code,
    )


def test_fleet_invalid_counts_findings() -> None:
    assert FleetInvalid([object()], root="x").message == "1 problem in the fleet"
    assert FleetInvalid([object(), object()], root="x").message == "2 problems in the fleet"


def test_without_location_or_hint_the_text_is_one_line() -> None:
    assert errors.PeerError("no answer").format() == "peer error: no answer"


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (errors.InputError, 2),
        (errors.SelectionError, 2),
        (errors.Refused, 1),
        (errors.PeerError, 1),
        (errors.Interrupted, 130),
    ],
)
def test_documented_exit_codes(cls: type[McfleetError], code: int) -> None:
    assert cls("x").exit_code == code


def test_fleet_invalid_names_the_findings() -> None:
    from mcfleet.fleet.findings import Finding

    found = [Finding("missing-file", "fleet.json", "", "no fleet.json in /tmp/x", "run it in the fleet's root")]
    found += [Finding("schema", f"hosts/h{i}/host.json", "/os", "bad", "fix") for i in range(6)]
    lines = FleetInvalid(found, root="/tmp/x").format().splitlines()
    assert lines[0] == "invalid fleet: /tmp/x: 7 problems in the fleet"
    assert lines[2] == "  - missing-file: fleet.json: no fleet.json in /tmp/x"
    assert lines[3] == "  - schema: hosts/h0/host.json#/os: bad"
    assert lines[-1] == "  … and 2 more"
