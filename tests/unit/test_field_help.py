"""A schema finding says what the field takes: its JSON type and description, or the fields there are."""

from __future__ import annotations

from mcfleet.fleet.field_help import field_help, json_type, known_fields
from mcfleet.fleet.load import parse_model
from mcfleet.fleet.models import Fleet, Host, Service


def _service(component: dict[str, object]) -> dict[str, object]:
    return {"name": "web", "components": [{"name": "web", "image": "r/web:1", **component}]}


def _hints(model: type[Service] | type[Fleet], data: object) -> dict[str, tuple[str, str]]:
    loaded, findings = parse_model(model, data, "hosts/a/services/web.json")
    assert loaded is None
    return {f.pointer: (f.message, f.hint) for f in findings}


def test_a_wrong_type_names_what_the_field_takes() -> None:
    hints = _hints(Service, _service({"env": {"GREETING": "hi"}}))
    assert hints["/components/0/env"] == (
        "Input should be a valid list",
        "fix the value: env takes a list of strings (KEY=VALUE)",
    )


def test_an_unknown_field_gets_the_close_name_or_the_list_of_fields() -> None:
    hints = _hints(Service, _service({"envs": ["A=1"], "colour": "red"}))
    assert hints["/components/0/envs"] == ("unknown field", "did you mean 'env'? (or remove it)")
    _message, hint = hints["/components/0/colour"]
    assert hint.startswith("remove it; the fields here are: name, image, volumes")


def test_a_missing_field_says_what_to_add() -> None:
    hints = _hints(Fleet, {"name": "f"})
    assert hints["/zone"] == (
        "required field is missing",
        "add it: zone takes a string (internal zone: <svc>.<zone> records)",
    )


def test_an_enum_value_is_not_listed_twice() -> None:
    hints = _hints(Service, {**_service({}), "stage": "service"})
    message, hint = hints["/stage"]
    assert "'services'" in message and "services" not in hint


def test_the_location_is_followed_through_lists_maps_and_tagged_unions() -> None:
    assert field_help(Service, ("components", 0, "routes", 0, "bind", 1)) == (
        "bind",
        "host addresses to publish on",
        "a list of strings",
    )
    assert field_help(Fleet, ("pins", "mcp", "uid")) == ("uid", None, "a whole number")
    assert field_help(Fleet, ("providers", "dns", "rfc2136", "key_file"))[:2] == (  # type: ignore[index]
        "key_file",
        "a file holding the TSIG secret (base64), never the secret itself; on this machine: relative to the fleet "
        "folder, absolute, or ~/…",
    )
    assert known_fields(Fleet, ("providers", "dns", "mcns")) == ["kind", "url", "token_file", "ca_file", "ttl"]
    assert known_fields(Host, ())[:3] == ["$schema", "name", "description"]
    assert field_help(Host, ("nosuch", "field")) is None


def test_json_types() -> None:
    assert json_type(bool) == "true or false"
    assert json_type(list[int]) == "a list of whole numbers"
    assert json_type(dict[str, int]) == "an object"
