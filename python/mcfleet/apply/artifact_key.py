"""Which build a host runs, by key: "pex" (the agent bundle every Debian host shares) or
"nix:<host>" (a NixOS host's own system).  Its own module so that `plan` (which asks which hosts
get the bundle) does not import the builder, nix and the bundle code (apply/artifacts.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcfleet.fleet.models_base import OS

if TYPE_CHECKING:
    from mcfleet.fleet.models import Host


def build_key(host: Host) -> str:
    return "pex" if host.os == OS.debian else f"nix:{host.name}"
