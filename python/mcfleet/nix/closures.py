"""Build and push what NixOS nodes run: the agent closure and the system toplevel.

For apply/deploy: `build_agent` / `build_toplevel` return store paths (from `nix build
--json`), `push` copies a closure to a node over SSH with strict host key checking.
Building needs nixpkgs; where it cannot be fetched the NixError says so (callers report
the host as blocked, never as built).
"""

from __future__ import annotations

from collections.abc import Sequence

from mcfleet.nix import argv as nixargv
from mcfleet.nix.attrs import attr, system_for
from mcfleet.nix.runner import NixError, build, run_nix


def needs_nixpkgs(err: NixError) -> bool:
    """True when a build failed only because nixpkgs could not be fetched (offline machine)."""
    return "nixpkgs" in err.message and ("unable to download" in err.message or "offline" in err.message)


async def build_agent(flake: str, arch: str, *, offline: bool = False) -> str:
    """The mcfleet-agent closure for a host architecture (amd64/arm64)."""
    (path,) = await build(flake, [attr("agent", system=system_for(arch))], offline=offline)
    return path


async def build_toplevel(flake: str, host: str, *, offline: bool = False) -> str:
    """A NixOS host's system toplevel (what `switch-to-configuration` activates)."""
    (path,) = await build(flake, [attr("toplevel", host=host)], offline=offline)
    return path


async def push(
    paths: Sequence[str],
    *,
    user: str,
    address: str,
    port: int = 22,
    identity_file: str | None = None,
    known_hosts: str | None = None,
) -> None:
    """`nix copy --to ssh://user@address` with NIX_SSHOPTS (strict host keys)."""
    await run_nix(
        nixargv.copy_argv(nixargv.ssh_store_uri(user, address), paths),
        extra_env={"NIX_SSHOPTS": nixargv.ssh_opts(port, identity_file, known_hosts)},
    )
