"""What goes into the agent bundle, and what makes it rebuild (the inputs hash)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import mcfleet
from mcfleet.bundle.build import PLATFORM_FILES, PLATFORMS, agent_requirements, inputs_hash, package_files

PACKAGE = Path(mcfleet.__file__).parent


def test_bundle_carries_the_agent_import_closure_only(tmp_path: Path) -> None:
    files = package_files(PACKAGE)
    rel = {p.relative_to(PACKAGE).as_posix() for p in files}
    assert {"agent/main.py", "agent/server.py", "agent/proto/agent_pb2.py", "fleet/models.py", "errors.py"} <= rel
    assert not any(r.startswith(("cli/", "apply/", "plan/", "lab/")) for r in rel)
    # The closure is enough: the agent imports from a copy holding only these files,
    # without pulling in the orchestrator's libraries.
    for path in files:
        target = tmp_path / "mcfleet" / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    code = (
        "import sys; import mcfleet.agent.main, mcfleet.agent.server, mcfleet.agent.client; "
        "bad = [m for m in ('typer', 'asyncssh', 'jsonschema', 'mcfleet.cli') if m in sys.modules]; "
        "assert not bad, bad; assert mcfleet.__file__.startswith(sys.argv[1]), mcfleet.__file__"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_inputs_hash_follows_sources_requirements_and_platforms(tmp_path: Path) -> None:
    package = tmp_path / "mcfleet"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    platforms = [tmp_path / name for name in PLATFORM_FILES]
    for name in PLATFORM_FILES:
        shutil.copy2(PLATFORMS / name, tmp_path / name)
    reqs = agent_requirements()
    base = inputs_hash(package, reqs, platforms)
    assert inputs_hash(package, reqs, platforms) == base
    (package / "agent/__pycache__").mkdir(exist_ok=True)
    (package / "agent/__pycache__/x.cpython-311.pyc").write_bytes(b"junk")
    (package / "cli").mkdir(exist_ok=True)
    (package / "cli/new_command.py").write_text("x = 1\n")
    assert inputs_hash(package, reqs, platforms) == base  # caches and orchestrator code: no rebuild
    (package / "agent/server.py").write_text((package / "agent/server.py").read_text() + "\n# edit\n")
    edited = inputs_hash(package, reqs, platforms)
    assert edited != base
    assert inputs_hash(package, [*reqs[:-1], "typing-inspection==0.0.1"], platforms) != edited
    platforms[1].write_text(platforms[1].read_text().replace("aarch64", "armv8"))
    assert inputs_hash(package, reqs, platforms) != edited


def test_requirements_are_pinned_for_every_dependency() -> None:
    reqs = agent_requirements()
    assert all("==" in r for r in reqs)
    assert {r.split("==")[0] for r in reqs} >= {"grpcio", "protobuf", "podman", "pydantic", "pydantic-core"}
