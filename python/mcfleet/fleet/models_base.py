"""Building blocks of the fleet models: constrained scalar types, the frozen base, enums."""

# Annotations are evaluated when each class is created (no `from __future__ import annotations`):
# from strings, pydantic would compile every field's annotation again to build the model.

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

NAME_RE = r"^[a-z][a-z0-9-]{0,62}$"
Name = Annotated[str, Field(pattern=NAME_RE, description="lower-case name: letters, digits, '-'")]
Hostname = Annotated[
    str,
    Field(
        max_length=253,
        pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$",
        description="a DNS name (lower case)",
    ),
]
# An address is an IPv4/IPv6 literal or a DNS name (e.g. a Tailnet name).
Address = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:_-]+$")]
Port = Annotated[int, Field(ge=1, le=65535)]
Id = Annotated[int, Field(ge=0, le=4294967294)]


# defer_build: pydantic builds a model's validator the first time it validates, not when its class is made
# at import; a plan builds 12 of mcfleet's ~60 models, and building all of them cost ~35 ms of every
# command's start.  Validating costs the same either way.  Every mcfleet model is made with it.
FROZEN = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True, populate_by_name=True)  # FROZEN + aliases


class OS(StrEnum):
    nixos = "nixos"
    debian = "debian"


class Arch(StrEnum):
    amd64 = "amd64"
    arm64 = "arm64"


class Role(StrEnum):
    master = "master"
    worker = "worker"
    edge = "edge"


class Stage(StrEnum):
    """Boot stages, in the order the agent brings them up (each needs the ones before it)."""

    foundation = "foundation"
    core = "core"
    management = "management"
    services = "services"

    @property
    def order(self) -> int:
        return list(Stage).index(self)
