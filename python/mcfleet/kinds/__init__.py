"""Resource kinds: one object per kind of thing mcfleet manages (see kinds.base).

`KINDS` is the registry, in apply order; plan and apply loop over it.  Adding a kind
is one module with a class that satisfies `ResourceKind` and one line here.
"""

from __future__ import annotations

from mcfleet.kinds.agent import AgentKind
from mcfleet.kinds.base import ApplyContext, GatherResult, Outcome, ReadContext, ResourceKind
from mcfleet.kinds.files import FilesKind
from mcfleet.kinds.host import HostKind
from mcfleet.kinds.providers import CertKind, DnsKind, RouteKind
from mcfleet.kinds.service import ServiceKind
from mcfleet.plan.model import HEAD_PHASES  # their kinds always record their part of the manifest

KINDS: list[ResourceKind] = [HostKind(), AgentKind(), FilesKind(), ServiceKind(), CertKind(), DnsKind(), RouteKind()]

__all__ = ["HEAD_PHASES", "KINDS", "ApplyContext", "GatherResult", "Outcome", "ReadContext", "ResourceKind", "kind_for"]


def kind_for(phase: str) -> ResourceKind:
    return next(k for k in KINDS if k.phase == phase)
