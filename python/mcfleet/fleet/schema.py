"""JSON Schemas generated from the models; committed under schemas/ and checked for drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mcfleet.fleet.models import Fleet, Host, Service

SCHEMAS: dict[str, type[BaseModel]] = {
    "fleet.schema.json": Fleet,
    "host.schema.json": Host,
    "service.schema.json": Service,
}


def schema_for(model: type[BaseModel], filename: str) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://mcfleet.invalid/schemas/{filename}",
        **schema,
    }


def render_schemas() -> dict[str, str]:
    return {
        name: json.dumps(schema_for(model, name), indent=2, sort_keys=True) + "\n" for name, model in SCHEMAS.items()
    }


def write_schemas(directory: Path) -> list[Path]:
    from mcfleet.util.files import atomic_write_text

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_schemas().items():
        path = directory / name
        atomic_write_text(path, text)
        written.append(path)
    return written
