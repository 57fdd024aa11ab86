"""Every provider field that names a file is classified as secret or not (tests/secret_poison.py):
a new secret file field cannot slip past the secret-poison tests."""

from __future__ import annotations

from pydantic import BaseModel

from mcfleet.fleet import models_providers
from tests.secret_poison import NOT_SECRET_FILE_FIELDS, SECRET_FILE_FIELDS, find_leaks


def test_every_file_field_of_a_provider_is_classified() -> None:
    models = [m for m in vars(models_providers).values() if isinstance(m, type) and issubclass(m, BaseModel)]
    fields = {name for m in models for name in m.model_fields if name.endswith("_file")}
    assert fields, "no provider model names a file: the walk is broken"
    assert fields - SECRET_FILE_FIELDS - NOT_SECRET_FILE_FIELDS == set(), "classify it in tests/secret_poison.py"
    assert not SECRET_FILE_FIELDS & NOT_SECRET_FILE_FIELDS


def test_a_leak_is_named_by_secret_and_source() -> None:
    leaks = find_leaks({"tsig": "c2VjcmV0LXNlY3JldC1zZWNyZXQ="}, {"plan": "x c2VjcmV0LXNlY3JldC1zZWNyZXQ= y", "ps": ""})
    assert leaks == ["tsig in plan"]


def test_a_base64_encoded_leak_is_found_too() -> None:
    import base64

    secret = "mcfleet-poison-0123456789abcdef"
    for prefix in ("", "x", "xy"):  # every alignment of the secret inside a longer encoded value
        framed = base64.b64encode(f"{prefix}{secret} trailing".encode()).decode()
        assert find_leaks({"token": secret}, {"--debug": f"agent {framed}"}) == ["token in --debug"], prefix
