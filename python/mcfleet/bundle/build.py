"""Build the agent bundle: one PEX that runs on Debian 12's python3 (3.11) on x86_64 and aarch64.

`pex --complete-platform` (the two interpreter descriptions in `platforms/`, taken from real
Debian 12 python3 on each arch) resolves every native wheel — grpcio, pydantic-core — for
both architectures into the one file, next to the `mcfleet` package; entry point the agent.

Content-addressed twice over:
- *inputs hash*: the package sources, the pinned requirements and the platform files.  A
  bundle is built once per inputs hash into the cache (`$MCFLEET_BUNDLE_CACHE`, default
  `~/.cache/mcfleet/bundles/<hash>/`) and reused while nothing changed.
- *content hash*: sha256 of the .pex, written next to it as `mcfleet-agent.pex.sha256`;
  it is the bundle's identity on the node (nothing is re-sent when the node has it).

Requirements are pinned to the versions installed where mcfleet runs (what the tests ran
against), so the bundle does not drift with PyPI.  Usage:
    python -m mcfleet.bundle [--out DIR] [--force]      # prints the bundle as JSON
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import mcfleet
from mcfleet.bundle.inputs_cache import cached_inputs_hash
from mcfleet.errors import McfleetError, ToolMissing

PLATFORMS = Path(__file__).parent / "platforms"
PLATFORM_FILES = ("linux-x86_64-cp311.json", "linux-aarch64-cp311.json")
ENTRY_POINT = "mcfleet.agent.main:main"
# --venv: the first start on a node unpacks the PEX into a venv under $PEX_ROOT and every later
# start runs that venv's python directly (a warm start costs ~0.7 s CPU instead of ~2.1 s for a
# zipapp PEX, which re-checks its wheels each time); push runs it once so activation starts warm.
# --sh-boot: the PEX starts as a /bin/sh script that execs the venv's python at once when the venv
# exists, instead of a first python that only runs PEX's bootstrap and then execs it (~60 ms of
# CPU on every agent start on a lab node; a cold venv still goes through that bootstrap).
PEX_OPTIONS = ("--venv", "--sh-boot")
BUNDLE_NAME = "mcfleet-agent.pex"
# What the agent imports, with every dependency spelled out so each one is pinned.
AGENT_DISTS = (
    "grpcio",
    "protobuf",
    "podman",
    "requests",
    "urllib3",
    "idna",
    "certifi",
    "charset-normalizer",
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-extensions",
    "typing-inspection",
)


class BundleError(McfleetError):
    kind = "bundle build failed"


@dataclass(frozen=True)
class Bundle:
    path: Path
    sha256: str
    size: int
    inputs_hash: str
    version: str
    cached: bool
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "path": str(self.path)}


def agent_requirements() -> list[str]:
    from importlib import metadata  # here: only a stale inputs hash reads it (zipfile, csv, email: ~25 M instructions)

    pins = []
    for dist in AGENT_DISTS:
        try:
            pins.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError as exc:
            raise ToolMissing(
                f"{dist} is not installed here, so the bundle cannot pin it", hint="pip install -e ."
            ) from exc
    return pins


def _canonical(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def installed_dists_stamp(names: tuple[str, ...] = (*AGENT_DISTS, "pex")) -> str:
    """The `<name>-<version>.dist-info` folders of `names` on sys.path, in path order: what the pins
    are made of (`metadata.version` reads the first one), from one directory listing per path entry.

    `metadata.version` parses each distribution's METADATA with the email parser (~1 ms each);
    a plan only needs to know whether any pin could have changed.
    """
    wanted = {_canonical(n) for n in names}
    found: list[str] = []
    for entry in sys.path:
        with contextlib.suppress(OSError), os.scandir(entry or ".") as listing:
            found += sorted(
                f"{entry}/{e.name}"
                for e in listing
                if e.name.endswith(".dist-info") and _canonical(e.name.split("-", 1)[0]) in wanted
            )
    return "\n".join(found)


def _module_file(package: Path, module: str) -> Path | None:
    parts = module.split(".")[1:]
    if not parts:
        return package / "__init__.py"
    rel = Path(*parts)
    for candidate in (package / rel / "__init__.py", package / rel.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _mcfleet_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.split(".")[0] == "mcfleet")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mcfleet":
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)  # `from pkg import module`
    return names


def package_files(package: Path) -> list[Path]:
    """The agent's import closure inside mcfleet (from the sources, by their imports).

    The bundle carries only these files, so an edit to the orchestrator (CLI, plan, apply...)
    neither rebuilds nor changes the node's agent.
    """
    agent = package / "agent"
    todo = [p for p in agent.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    found: set[Path] = {package / "py.typed"} if (package / "py.typed").exists() else set()
    while todo:
        path = todo.pop()
        if path in found:
            continue
        found.add(path)
        # Every enclosing package's __init__.py runs on import, so it belongs too.
        for parent in path.relative_to(package).parents:
            init = package / parent / "__init__.py"
            if init.is_file() and init not in found:
                todo.append(init)
        if path.suffix == ".py":
            todo.extend(f for m in _mcfleet_imports(path) if (f := _module_file(package, m)) is not None)
    return sorted(found)


def inputs_hash(package: Path, requirements: list[str], platforms: list[Path]) -> str:
    digest = hashlib.sha256()

    def feed(label: str, data: bytes) -> None:
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)

    for path in package_files(package):
        feed(f"src:{path.relative_to(package).as_posix()}", path.read_bytes())
    feed("requirements", "\n".join(requirements).encode())
    for path in platforms:
        feed(f"platform:{path.name}", path.read_bytes())
    from importlib import metadata

    feed("pex", metadata.version("pex").encode())
    feed("pex-options", "\0".join(PEX_OPTIONS).encode())
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stat_key(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} {st.st_ino}"


def cache_entry_intact(pex: Path, sha_file: Path) -> bool:
    """The cached .pex still has the sha256 its .sha256 file names.

    Hashing the ~22 MB file costs ~25 ms of CPU on every apply, so the answer is remembered
    in `<pex>.checked` with the file's stat (size, mtime, ctime, inode): a replaced, rewritten
    or truncated file changes it and is hashed again.
    """
    want = sha_file.read_text().split()[0]
    checked = pex.with_name(pex.name + ".checked")
    with contextlib.suppress(OSError):
        if checked.read_text() == f"{_stat_key(pex)} {want}":
            return True
    if sha256_file(pex) != want:
        return False
    with contextlib.suppress(OSError):  # a read-only cache only costs the hashing next time
        tmp = checked.with_name(f".{checked.name}.{os.getpid()}.tmp")
        tmp.write_text(f"{_stat_key(pex)} {want}")
        os.replace(tmp, checked)
    return True


def default_cache() -> Path:
    env = os.environ.get("MCFLEET_BUNDLE_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mcfleet" / "bundles"


def _run_pex(requirements: list[str], package: Path, platforms: list[Path], out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="mcfleet-bundle-") as tmp:
        src = Path(tmp) / "src"
        for path in package_files(package):
            target = src / "mcfleet" / path.relative_to(package)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        argv = [sys.executable, "-m", "pex", *requirements, "-D", str(src), "-e", ENTRY_POINT]
        for platform in platforms:
            argv += ["--complete-platform", str(platform)]
        argv += [*PEX_OPTIONS, "--python-shebang", "/usr/bin/env python3", "--no-emit-warnings", "-o", str(out)]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
        except subprocess.TimeoutExpired as exc:
            raise BundleError("pex did not finish within 15 minutes") from exc
        if done.returncode != 0:
            tail = " / ".join(done.stderr.strip().splitlines()[-4:])
            raise BundleError(
                f"pex exited {done.returncode}: {tail}",
                hint="pex needs PyPI (or a pip index in PIP_INDEX_URL) to fetch both arches' wheels",
            )


def _inputs(cache_dir: Path | None) -> tuple[Path, list[Path], str, Path]:
    """The bundle's inputs (package, platform files), their hash, and the cache slot of its bundle.

    The requirement pins enter the hash; they are read (`agent_requirements`) only when the
    cached hash is stale: the installed distributions' folder names stand for them in the key.
    """
    package = Path(mcfleet.__file__).parent
    platforms = [PLATFORMS / name for name in PLATFORM_FILES]
    cache = cache_dir or default_cache()

    def compute() -> str:
        return inputs_hash(package, agent_requirements(), platforms)

    key = cached_inputs_hash(cache, package, platforms, installed_dists_stamp(), compute)
    return package, platforms, key, cache / key[:24]


def current_inputs_hash(cache_dir: Path | None = None) -> str:
    """The inputs hash of the bundle this mcfleet would build now (never builds; ~1 ms when unchanged)."""
    return _inputs(cache_dir)[2]


def cached_bundle(cache_dir: Path | None = None) -> tuple[str, str | None]:
    """(the inputs hash of the current sources, the sha256 of their bundle if it is built, else None).

    `mcfleet plan` uses it to show an agent upgrade without paying for a build, and records the
    inputs hash so that `apply` of the saved plan sees a change of mcfleet's sources before it builds.
    """
    *_, key, slot = _inputs(cache_dir)
    sha_file = slot / f"{BUNDLE_NAME}.sha256"
    if not (slot / BUNDLE_NAME).is_file() or not sha_file.is_file():
        return key, None
    return key, sha_file.read_text().split()[0]


def cached_bundle_sha256(cache_dir: Path | None = None) -> str | None:
    """The sha256 of the bundle for the current sources if it is already built, else None (never builds)."""
    return cached_bundle(cache_dir)[1]


def _quiet(text: str) -> None:
    return None


def build_agent_bundle(
    out_dir: Path | None = None,
    *,
    cache_dir: Path | None = None,
    force: bool = False,
    step: Callable[[str], None] = _quiet,
) -> Bundle:
    """Return the agent bundle for the current sources, building it only if its inputs changed.

    With `out_dir`, the .pex and its .sha256 are also copied there (atomically).  `step(text)`
    is told each step as it starts (a first build takes ~15 s: the caller shows what it waits for).
    """
    started = time.monotonic()
    step("agent bundle: hashing its inputs")
    package, platforms, key, slot = _inputs(cache_dir)
    requirements = agent_requirements()
    slot.mkdir(parents=True, exist_ok=True)
    pex, sha_file = slot / BUNDLE_NAME, slot / f"{BUNDLE_NAME}.sha256"
    with (slot / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            step("agent bundle: waiting for another mcfleet building the same bundle")
            fcntl.flock(lock, fcntl.LOCK_EX)  # one build per inputs hash, even across processes
        cached = not force and pex.is_file() and sha_file.is_file()
        if cached and not cache_entry_intact(pex, sha_file):
            cached = False  # a damaged cache entry is rebuilt, never served
        if not cached:
            step(
                f"agent bundle: building {BUNDLE_NAME} with pex (wheels for {len(platforms)} platforms; "
                "the first build takes ~15 s, then it is cached)"
            )
            tmp = slot / f".{BUNDLE_NAME}.{os.getpid()}.tmp"
            try:
                _run_pex(requirements, package, platforms, tmp)
                step("agent bundle: hashing the built bundle")
                digest = sha256_file(tmp)
                os.replace(tmp, pex)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            sha_file.write_text(f"{digest}  {BUNDLE_NAME}\n")
            (slot / "inputs.json").write_text(json.dumps({"inputs_hash": key, "requirements": requirements}, indent=1))
        digest = sha_file.read_text().split()[0]
    path = pex
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / BUNDLE_NAME
        for source, target in ((pex, path), (sha_file, out_dir / sha_file.name)):
            staging = target.with_name(f".{target.name}.tmp")
            shutil.copy2(source, staging)
            os.replace(staging, target)
    return Bundle(path, digest, path.stat().st_size, key, mcfleet.__version__, cached, time.monotonic() - started)


async def build_agent_bundle_async(
    out_dir: Path | None = None,
    *,
    cache_dir: Path | None = None,
    force: bool = False,
    step: Callable[[str], None] = _quiet,
) -> Bundle:
    """`build_agent_bundle` off the event loop (pex runs as a subprocess); `step` is called on the loop."""
    loop = asyncio.get_running_loop()

    def on_loop(text: str) -> None:
        loop.call_soon_threadsafe(step, text)

    return await asyncio.to_thread(build_agent_bundle, out_dir, cache_dir=cache_dir, force=force, step=on_loop)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mcfleet.bundle", description="Build the agent PEX bundle.")
    parser.add_argument("--out", type=Path, help="also copy the bundle (and its .sha256) here")
    parser.add_argument("--cache", type=Path, help="bundle cache (default $MCFLEET_BUNDLE_CACHE or ~/.cache/mcfleet)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the inputs did not change")
    args = parser.parse_args(argv)
    try:
        bundle = build_agent_bundle(args.out, cache_dir=args.cache, force=args.force)
    except McfleetError as exc:
        print(exc.format(), file=sys.stderr)
        return exc.exit_code
    print(json.dumps(bundle.as_dict(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
