"""What plan's imports build: no service model validator for a fleet without services, no
generated dataclass docstrings, no NamedTuple class, no importlib.resources nor container specs.

A plan imports ~40 dataclasses and ~55 pydantic models; building them is most of what it does
above a bare SSH client.  Each case runs in a fresh process (what a command pays).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MINIMAL = REPO / "tests" / "data" / "fleets" / "minimal"
# what `mcfleet plan` does and imports before it connects (bench/startup.py: PLAN_BOOT, PLAN_IMPORTS)
PLAN_IMPORTS = (
    "import os\nos.environ['PYDANTIC_DISABLE_PLUGINS'] = '__all__'\n"
    "import mcfleet.cli.main as m\nm._skip_pydantic_plugin_scan()\n"
    "import mcfleet.cli.plan_fast, mcfleet.cli.plan_run, mcfleet.fleet.load, mcfleet.fleet.rules, "
    "mcfleet.kinds.system, mcfleet.plan.planner, mcfleet.plan.render, mcfleet.plan.saved, "
    "mcfleet.report.progress, mcfleet.transport.ssh, mcfleet.util.aio\n"
)


LAZY = (
    "mcfleet.providers",
    "mcfleet.nix.closures",
    "mcfleet.nix.runner",
    "mcfleet.observe.dns",
    "mcfleet.observe.routes",
)


def _run(code: str, env: dict[str, str] | None = None) -> dict[str, object]:
    argv = [sys.executable, "-c", f"LAZY = {LAZY!r}\n" + PLAN_IMPORTS + code]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_a_fleet_without_services_never_builds_the_service_validator(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    shutil.copytree(MINIMAL, fleet)
    for folder in fleet.glob("hosts/*/services"):
        shutil.rmtree(folder)
    code = (
        "import json\nfrom pathlib import Path\nfrom mcfleet.fleet.load import load_fleet\n"
        "from mcfleet.fleet.rules import check\nfrom mcfleet.fleet.models import Service\n"
        "from mcfleet.fleet.desired import desired_state\n"
        f"loaded = load_fleet(Path({str(fleet)!r}))\nfindings = check(loaded)\ndesired_state(loaded)\n"
        "print(json.dumps({'hosts': len(loaded.hosts), 'findings': len(findings) + len(loaded.findings), "
        "'built': Service.__pydantic_complete__}))\n"
    )
    assert _run(code) == {"hosts": 3, "findings": 0, "built": False}


def test_service_files_are_validated_as_before(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    shutil.copytree(MINIMAL, fleet)
    bad = fleet / "hosts" / "alpha" / "services" / "web.json"
    data = json.loads(bad.read_text())
    data["componentz"] = data.pop("components")
    bad.write_text(json.dumps(data))
    code = (
        "import json\nfrom pathlib import Path\nfrom mcfleet.fleet.load import load_fleet\n"
        f"loaded = load_fleet(Path({str(fleet)!r}))\n"
        "print(json.dumps({'services': sum(len(e.services) for e in loaded.hosts.values()), "
        "'findings': sorted((f.file, f.pointer, f.message) for f in loaded.findings)}))\n"
    )
    assert _run(code) == {
        "services": 1,
        "findings": [
            ["hosts/alpha/services/web.json", "/components", "required field is missing"],
            ["hosts/alpha/services/web.json", "/componentz", "unknown field"],
        ],
    }


def test_plan_imports_build_no_dataclass_docstring_no_resources_no_container_specs() -> None:
    # A dataclass without a docstring gets one made from inspect.signature() when it is created.
    code = (
        "import json, sys, dataclasses\n"
        "made = sorted(f'{n}.{k}' for n, m in list(sys.modules.items()) if n.startswith('mcfleet')\n"
        "    for k, v in vars(m).items() if isinstance(v, type) and dataclasses.is_dataclass(v)\n"
        "    and v.__module__ == n and (v.__doc__ or '').startswith(v.__name__ + '('))\n"
        "print(json.dumps({'generated': made, 'resources': 'importlib.resources' in sys.modules,\n"
        "    'specs': 'mcfleet.agent.spec' in sys.modules, 'nt': 'NamedTuple' in vars(mcfleet.cli.plan_fast),\n"
        "    'lazy': sorted(n for n in sys.modules if n.startswith(LAZY))}))\n"
    )
    # imported where they are used: the agent's container specs by the service kind for a host
    # with services, nix for NixOS hosts, the providers' clients for a fleet with providers
    assert _run(code) == {"generated": [], "resources": False, "specs": False, "nt": False, "lazy": []}


def test_asking_for_the_built_bundle_imports_no_builder_and_no_package_metadata(tmp_path: Path) -> None:
    # plan asks which Debian hosts get the bundle and its sha256 (never builds): the builder (nix,
    # the push code) and importlib.metadata (zipfile, csv, email) are for a build.
    code = (
        "import json, sys\nfrom pathlib import Path\nfrom mcfleet.fleet.load import load_fleet\n"
        "from mcfleet.cli.plan_run import bundle_hashes\n"
        f"hashes, note, _inputs = bundle_hashes(load_fleet(Path({str(REPO)!r})), ['svc', 'rift', 'hyperborea'])\n"
        "heavy = ('importlib.metadata', 'zipfile', 'mcfleet.apply.artifacts', 'mcfleet.nix.closures')\n"
        "print(json.dumps({'debian': bool(hashes) or note is not None,\n"
        "    'imported': sorted(m for m in heavy if m in sys.modules)}))\n"
    )
    env = {**os.environ, "MCFLEET_BUNDLE_CACHE": str(tmp_path)}
    _run(code, env)  # the first run after a change of the sources hashes them (and reads the pins' versions)
    assert _run(code, env) == {"debian": True, "imported": []}


def test_plan_imports_build_no_model_validator() -> None:
    """pydantic builds a model's validator when it first validates (defer_build): a plan builds the dozen
    it uses (a host, facts, a manifest, actions), not all ~60 at import."""
    code = (
        "import json\nfrom pydantic import BaseModel\n"
        "def every(c):\n    for s in c.__subclasses__():\n        yield s\n        yield from every(s)\n"
        "mine = [c for c in every(BaseModel) if c.__module__.startswith('mcfleet.')]\n"
        "print(json.dumps({'models': len(mine) > 40,\n"
        "    'built': sorted(f'{c.__module__}.{c.__name__}' for c in mine if c.__pydantic_complete__)}))\n"
    )
    # made at import as defaults (a fleet's `ports` and `providers`, a host's `agent` and `nix`): every plan
    # validates the fleet and its hosts, which builds these anyway
    made = ["mcfleet.fleet.models.Agent", "mcfleet.fleet.models.NixDeploy", "mcfleet.fleet.models.PortRange",
            "mcfleet.fleet.models_providers.Providers"]  # fmt: skip
    assert _run(code) == {"models": True, "built": made}
