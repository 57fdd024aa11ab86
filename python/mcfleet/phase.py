"""The one phase vocabulary of plan and apply.

A plan action belongs to the phase of the resource kind that made it (`host`,
`agent`, `cert`, `migrate`, `files`, `deploy`, `route`, `dns`, `manifest`).  Apply reports events
per phase too; the host kind runs as `provision` and the agent kind as `build`,
`push` and `activate` (each kind says which apply phases it runs as).  The
member order is the order things happen on a host: a moved service's data restored before
its files are written, a service's cert and files before
its containers, its containers before the proxy routes to them, the routes before
the DNS names that lead there.  Removals run the other way round (DNS, routes,
then containers), so nothing ever points at what is already gone.
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
    cert = "cert"
    migrate = "migrate"
    files = "files"
    deploy = "deploy"
    route = "route"
    dns = "dns"
    manifest = "manifest"

    @property
    def order(self) -> int:
        return PHASE_ORDER.index(self)


PHASE_ORDER: tuple[Phase, ...] = tuple(Phase)
