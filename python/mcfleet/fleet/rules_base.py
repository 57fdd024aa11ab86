"""What every rule module shares: the Rule type and how to name a file in a finding."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mcfleet.fleet.findings import Finding
from mcfleet.fleet.load import LoadedFleet
from mcfleet.fleet.models import Fleet, Host, Service

Rule = Callable[[LoadedFleet, Fleet], Iterator[Finding]]


def host_file(loaded: LoadedFleet, name: str) -> str:
    return loaded.rel(loaded.hosts[name].dir / "host.json")


@dataclass(frozen=True)
class Placed:
    """A service together with the host it is placed on and the file it came from."""

    host: Host
    service: Service
    file: str


def placed_services(loaded: LoadedFleet) -> Iterator[Placed]:
    """Every service of the fleet, hosts in name order, services in file order."""
    for name in sorted(loaded.hosts):
        entry = loaded.hosts[name]
        for index, svc in enumerate(entry.services):
            yield Placed(entry.host, svc, loaded.rel(entry.service_path(index)))
