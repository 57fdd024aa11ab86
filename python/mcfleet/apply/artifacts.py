"""Build: what each selected host runs, built once per distinct target before anything is activated.

- Debian hosts get the agent PEX bundle: one file that carries the native wheels of
  both x86_64 and aarch64, so one build serves every Debian host.  Its sha256 is its
  identity (content-addressed: nothing is re-sent when the node has that hash).
- NixOS hosts get their system toplevel from `nix build` of the fleet's flake
  (`nixosConfigurations.<host>.config.system.build.toplevel`; the agent is part of that
  closure).  Its store path is its identity.  Where Nix cannot build (a real NixOS
  configuration needs nixpkgs), the build is reported as **blocked** with nix's
  reason; it is never faked.

`--bundle FILE` replaces the Debian build with a given file (a release artefact, or
a deliberately broken one in the rollback test).

A build can take long (a first bundle build ~15 s, a NixOS system minutes), so the builder
reports what it is doing through `report(key, message)`: the bundle's steps, and nix's own
stderr lines (what it builds or fetches, the builders' log lines), at most one a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from mcfleet.apply.artifact_key import build_key
from mcfleet.apply.push import sha256_file
from mcfleet.errors import McfleetError, ToolMissing
from mcfleet.fleet.models import Host
from mcfleet.nix.closures import build_toplevel, needs_nixpkgs
from mcfleet.nix.runner import NixError
from mcfleet.report.rate import Every

NIX_BUILD_TIMEOUT = 600.0


@dataclass(frozen=True)
class Artifact:
    key: str  # what was built: "pex" (every Debian host) or "nix:<host>"
    path: Path
    sha256: str
    version: str = ""
    cached: bool = True  # False: built by this run
    store_path: str | None = None  # NixOS: the system toplevel to copy and switch to


class BuildBlocked(McfleetError):
    """The build cannot run on this machine (e.g. a NixOS closure without nixpkgs)."""

    kind = "blocked"


# build_pex(step): `step(text)` says which step of the bundle build is running
BundleFactory = Callable[[Callable[[str], None]], Awaitable[Artifact]]
# report(key, message): progress of the build of `key` ("pex", "nix:<host>")
BuildReport = Callable[[str, str], None]


def _no_report(key: str, message: str) -> None:
    return None


class Builder:
    """Builds each distinct target once per run (concurrent callers share the result)."""

    def __init__(
        self,
        *,
        bundle: Path | None = None,
        build_pex: BundleFactory | None = None,
        flake: Path | None = None,
        report: BuildReport | None = None,
    ) -> None:
        self._bundle = bundle
        self._build_pex = build_pex
        self._flake = flake
        self.report = report or _no_report
        self._tasks: dict[str, asyncio.Task[Artifact]] = {}

    async def build(self, host: Host) -> Artifact:
        key = build_key(host)
        if key not in self._tasks:
            self._tasks[key] = asyncio.ensure_future(self._build(key, host))
        return await asyncio.shield(self._tasks[key])

    def built(self, host: Host) -> Artifact | None:
        """The artifact already built for this host's target, if its build finished and succeeded."""
        task = self._tasks.get(build_key(host))
        if task is None or not task.done() or task.cancelled() or task.exception() is not None:
            return None
        return task.result()

    async def _build(self, key: str, host: Host) -> Artifact:
        if key != "pex":
            return await self._build_nix(host)
        path = self._bundle
        if path is None:
            if self._build_pex is None:
                raise BuildBlocked(
                    "no agent bundle builder available",
                    location=f"{host.name}: build",
                    hint="pass --bundle FILE with a built agent PEX",
                )
            return await self._build_pex(lambda text: self.report(key, text))
        if not path.is_file():
            raise McfleetError(f"agent bundle {path} does not exist", location=f"{host.name}: build")
        sha = await asyncio.to_thread(sha256_file, path)
        return Artifact(key, path, sha)

    async def _build_nix(self, host: Host) -> Artifact:
        """`nix build` of the host's system toplevel (mcfleet.nix); blocked, with nix's reason, where it cannot run."""
        where = f"{host.name}: build"
        if self._flake is None or not (self._flake / "flake.nix").is_file():
            raise BuildBlocked(
                "a NixOS host's system comes from the fleet's flake, and this fleet folder has no flake.nix",
                location=where,
                hint="run mcfleet from the flake's root (where flake.nix is)",
            )
        key = build_key(host)
        every = Every()
        held: list[str] = []  # the last line not reported yet (thinned out)

        def on_line(line: str) -> None:
            held[:] = [line]
            if every.due():
                self.report(key, f"nix: {line[:200]}")
                held.clear()

        self.report(key, f"nix build of {host.name}'s system: running (its log lines follow)")
        try:
            async with asyncio.timeout(NIX_BUILD_TIMEOUT):
                try:
                    path = await build_toplevel(str(self._flake), host.name, on_line=on_line)
                finally:
                    if held:  # nix's last line is always shown
                        self.report(key, f"nix: {held[0][:200]}")
        except (NixError, ToolMissing, TimeoutError) as exc:
            reason = exc.message if isinstance(exc, McfleetError) else f"no result within {NIX_BUILD_TIMEOUT:g} s"
            first = reason.splitlines()[0][:300]
            if isinstance(exc, NixError) and needs_nixpkgs(exc):
                first = f"nixpkgs cannot be fetched here ({first})"
            raise BuildBlocked(
                f"`nix build` of {host.name}'s system cannot run here: {first}",
                location=where,
                hint="run the apply where nix can fetch nixpkgs (or has it in its store); Debian hosts are unaffected",
            ) from exc
        digest = path.rsplit("/", 1)[-1].partition("-")[0]
        return Artifact(f"nix:{host.name}", Path(path), digest, store_path=path)
