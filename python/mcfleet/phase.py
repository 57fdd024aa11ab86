"""The one phase vocabulary of plan and apply.

A plan action belongs to the phase of the resource kind that made it (`host`,
`agent`, `deploy`, `cert`, `dns`, `route`, `manifest`).  Apply reports events
per phase too; the host kind runs as `provision` and the agent kind as `build`,
`push` and `activate` (each kind says which apply phases it runs as).  The
member order is the order things happen on a host.
"""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    host = "host"
    provision = "provision"
    agent = "agent"
    build = "build"
    push = "push"
    activate = "activate"
    deploy = "deploy"
    cert = "cert"
    dns = "dns"
    route = "route"
    manifest = "manifest"

    @property
    def order(self) -> int:
        return PHASE_ORDER.index(self)


PHASE_ORDER: tuple[Phase, ...] = tuple(Phase)
