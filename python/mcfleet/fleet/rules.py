"""Fleet-wide rules: pure functions from a loaded fleet to findings.

Each rule has a stable code listed in `findings.RULES`; the pure-Nix validator in nix/lib
implements the same codes and a test compares the two.  The exact semantics of each code
are written at the top of the module that implements it:

    rules_users.py     pin-mismatch, pin-missing, id-duplicate, id-dynamic-range, id-system-collision
    rules_hosts.py     address-duplicate, edge-containers, master-count, jump-loop (Python-only)
    rules_dns.py       dns-no-fallback, dns-fallback-unused, dns-fallback-internal, dns-fallback-unreached,
                       dns-unreachable
    rules_services.py  image-unpinned, route-duplicate, public-no-edge, public-domain, core-off-master,
                       route-listener-duplicate, route-name-split, public-loopback,
                       bind-other-host
    rules_ports.py     host-port-duplicate, port-range-exhausted
    rules_names.py     name-claimed-twice, unknown-reference, stage-cycle
    rules_secrets.py   secret-recipient-missing, secret-recipient-invalid (Python-only: read
                       secrets/*.recipients, check keys with the age library)
    rules_files.py     source-unreadable, template-unknown (Python-only: read the files services take
                       content from)

Every rule is linear in the size of the fleet (dicts, no pairwise comparisons), so a
1,000-host fleet validates in well under a second (bench/validate_1000.py).
"""

from __future__ import annotations

from mcfleet.fleet import (
    rules_dns,
    rules_files,
    rules_hosts,
    rules_names,
    rules_ports,
    rules_secrets,
    rules_services,
    rules_users,
)
from mcfleet.fleet.findings import Finding
from mcfleet.fleet.load import LoadedFleet
from mcfleet.fleet.rules_base import Rule

RULE_FUNCS: list[Rule] = [
    *rules_users.RULES,
    *rules_hosts.RULES,
    *rules_dns.RULES,
    *rules_services.RULES,
    *rules_ports.RULES,
    *rules_names.RULES,
    *rules_secrets.RULES,
    *rules_files.RULES,
]


def check(loaded: LoadedFleet) -> list[Finding]:
    """All findings for a fleet: load findings first, then every rule's (none without a valid fleet.json)."""
    found = list(loaded.findings)
    if loaded.fleet is not None:
        for rule in RULE_FUNCS:
            found.extend(rule(loaded, loaded.fleet))
    return found
