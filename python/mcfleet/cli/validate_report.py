"""`mcfleet validate`'s work and output, without typer: the command and main's fast path share it.

`mcfleet validate` is the command run most often (editors, pre-commit hooks, CI), so main()
answers its plain forms (`[-C DIR] validate [--json] [--no-cache]`) by calling `run_validate`
directly, without importing typer (whose parameter handling builds pydantic adapters at
start-up); an unchanged valid fleet is answered from cli/validate_cache.py without loading it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from mcfleet.cli import validate_cache
from mcfleet.cli.fleetdir import fleet_root
from mcfleet.errors import EXIT_INVALID, EXIT_OK


def _print_valid(result: dict[str, Any], *, json_out: bool) -> None:
    if json_out:
        data = {"root": result["root"], "valid": True, "hosts": result["hosts"], "findings": [], "held_back": []}
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    else:
        hosts, services = len(result["hosts"]), int(result["services"])
        sys.stdout.write(f"ok: {_count(hosts, 'host')}, {_count(services, 'service')} valid\n")
    sys.stdout.flush()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def run_validate(given: Path | None, *, json_out: bool, use_cache: bool = True) -> int:
    """Validate the fleet (`given`, else -C or the upward search); print; return the exit code.

    Findings go to stdout (so `| grep` and `| cat` see them), the summary to stderr.
    """
    root = fleet_root(given).resolve()
    if use_cache:
        hit = validate_cache.remembered(root)
        if hit is not None:
            _print_valid(hit, json_out=json_out)
            return EXIT_OK
    key = validate_cache.cache_key(root)
    from mcfleet.fleet.causes import root_causes
    from mcfleet.fleet.load import load_fleet
    from mcfleet.fleet.rules import check

    loaded = load_fleet(root)
    findings = check(loaded)
    if not findings:
        result = {
            "root": str(loaded.root),
            "hosts": sorted(loaded.hosts),
            "services": sum(len(e.services) for e in loaded.hosts.values()),
        }
        if key is not None and validate_cache.cache_key(root) == key:  # nothing changed while it ran
            validate_cache.remember(root, result, loaded.sources())
        _print_valid(result, json_out=json_out)
        return EXIT_OK
    causes = root_causes(list(findings))
    if json_out:
        data = {
            "root": str(loaded.root),
            "valid": False,
            "hosts": sorted(loaded.hosts),
            "findings": [f.as_dict() for f in causes.shown],
            "held_back": [f.as_dict() for f in causes.held_back],
        }
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
        sys.stdout.flush()
        return EXIT_INVALID
    for finding in causes.shown:
        sys.stdout.write(finding.format() + "\n")
    sys.stdout.flush()
    summary = f"{len(causes.shown)} problem(s) in {loaded.root}"
    if causes.held_back:
        summary += (
            f"; {len(causes.held_back)} finding(s) of the fleet rules held back: they may follow from the "
            "files above, which did not load (fix those, then validate again)"
        )
    sys.stderr.write(summary + "\n")
    return EXIT_INVALID
