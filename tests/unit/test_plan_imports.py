"""`mcfleet plan` imports only what the fleet uses: no provider client, no grpc, no jsonschema by default.

The ACME client alone brings requests, urllib3 and josepy; grpc and protobuf cost ~40 ms;
jsonschema ~40 ms.  A fleet without providers or services never needs them, so a plan of
such a fleet must not import them (each one is imported where it is used).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mcfleet.observe.manifest import Manifest, ManifestAgent
from tests.unit.unreachable import init_unreachable_fleet

HEAVY = ("acme", "josepy", "requests", "urllib3", "dns", "grpc", "google.protobuf", "jsonschema", "podman")


def _modules_after(code: str, cwd: Path) -> set[str]:
    script = f"import sys\n{code}\nprint('MODS=' + ','.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=cwd)
    return set(out.stdout.strip().splitlines()[-1].removeprefix("MODS=").split(","))


def _heavy(mods: set[str]) -> list[str]:
    return sorted(m for m in mods if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_a_plan_without_providers_or_services_imports_no_provider_client_grpc_or_jsonschema(tmp_path: Path) -> None:
    fleet = init_unreachable_fleet(tmp_path / "fleet")
    code = (
        "import sys, io, contextlib\nfrom mcfleet.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out: code = main(['plan', '--json'])\n"
        "assert code == 1 and 'node1' in out.getvalue(), (code, out.getvalue())  # unreachable: reported\n"
    )
    mods = _modules_after(code, fleet)
    assert "mcfleet.plan.planner" in mods and "asyncssh" in mods  # the plan was made
    assert _heavy(mods) == []


def test_a_valid_manifest_is_read_without_jsonschema(tmp_path: Path) -> None:
    text = Manifest(agent=ManifestAgent(sha256="ab" * 32)).to_text()
    code = (
        "from mcfleet.observe.manifest import parse_manifest\n"
        f"assert parse_manifest({text!r}, where='m').agent.sha256 == {'ab' * 32!r}\n"
    )
    assert "jsonschema" not in _modules_after(code, tmp_path)


def test_every_fleet_facts_and_plan_model_has_its_annotations_evaluated_not_strings() -> None:
    # A model module with `from __future__ import annotations` makes pydantic compile each field's
    # annotation from its string when it builds the model: ~19 M instructions more for a plan's imports.
    from pydantic import BaseModel

    import mcfleet.cli.plan_run
    import mcfleet.fleet.load
    import mcfleet.plan.planner  # noqa: F401  (every model a plan builds)

    def subclasses(cls: type) -> list[type]:
        return [c for sub in cls.__subclasses__() for c in (sub, *subclasses(sub))]

    models = {m for m in subclasses(BaseModel) if m.__module__.startswith("mcfleet.")}
    assert {"Host", "Fleet", "Facts", "Manifest", "Plan"} <= {m.__name__ for m in models}
    postponed = sorted(
        f"{m.__module__}.{m.__name__}.{field}"
        for m in models
        for field, annotation in vars(m).get("__annotations__", {}).items()
        if isinstance(annotation, str)
    )
    assert postponed == []
