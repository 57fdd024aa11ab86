"""Build and push what NixOS nodes run: the system toplevel (and the agent closure).

For apply/deploy: `build_toplevel` / `build_agent` return store paths (from `nix build
--json`); `push` copies a closure to a node with `nix copy --to ssh-ng://…` over the
host's own SSH settings: the address the SSH connection used, its port and identity,
a known_hosts file holding only the keys host.json pins (node and jump host), and
sudo/doas for the remote store.  Building needs nixpkgs for a real NixOS host; where it
cannot be fetched the NixError says so (callers report the host as blocked).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mcfleet.errors import InputError
from mcfleet.fleet.load import HostEntry
from mcfleet.nix import argv as nixargv
from mcfleet.nix.attrs import attr, system_for
from mcfleet.nix.runner import NixError, build, run_nix
from mcfleet.util.private_file import open_to_others, refusal


def needs_nixpkgs(err: NixError) -> bool:
    """True when a build failed only because nixpkgs could not be fetched (offline machine)."""
    return "nixpkgs" in err.message and ("unable to download" in err.message or "offline" in err.message)


async def build_agent(flake: str, arch: str, *, offline: bool = False) -> str:
    """The mcfleet-agent closure for a host architecture (amd64/arm64)."""
    (path,) = await build(flake, [attr("agent", system=system_for(arch))], offline=offline)
    return path


async def build_toplevel(
    flake: str, host: str, *, offline: bool = False, on_line: Callable[[str], None] | None = None
) -> str:
    """A NixOS host's system toplevel (what `switch-to-configuration` activates); `on_line`: nix's stderr lines."""
    (path,) = await build(flake, [attr("toplevel", host=host)], offline=offline, on_line=on_line)
    return path


async def eval_toplevel(flake: str, host: str, *, offline: bool = True) -> str:
    """The toplevel's store path, evaluated (not built): what the plan compares /run/current-system with."""
    argv = nixargv.eval_argv(flake, attr("toplevel", host=host) + ".outPath", raw=True, offline=offline)
    result = await run_nix(argv)
    return result.stdout.strip()


@dataclass(frozen=True)
class PushPlan:
    """How one closure goes to one node: the store URI, NIX_SSHOPTS, and whether to sign first."""

    store_uri: str
    ssh_opts: str
    no_check_sigs: bool  # the receiving store is root or trusts the SSH user: it takes unsigned paths
    sign_with: str | None  # local secret key file (trust=signed)


def trust_of(entry: HostEntry) -> str:
    """root | trusted-user | signed; refuses, before anything is copied, a push the node would reject."""
    host = entry.host
    as_root = host.ssh.user == "root" or host.ssh.sudo
    trust = host.nix.trust or ("root" if as_root else None)
    where = f"hosts/{host.name}/host.json#/nix/trust"
    if trust is None:
        raise InputError(
            f"{host.name}: the SSH user {host.ssh.user!r} is not root, so the node's nix store refuses unsigned paths "
            'from it ("lacks a valid signature")',
            location=where,
            hint='set "nix": {"trust": "signed", "public_keys": [...], "signing_key_file": "..."} (the NixOS module '
            'declares the key), or "trust": "trusted-user" (the module adds the user to nix trusted-users), '
            'or "ssh": {"sudo": true}',
        )
    if trust == "root" and not as_root:
        raise InputError(
            f"{host.name}: nix.trust is root but the SSH user {host.ssh.user!r} neither is root nor uses sudo/doas",
            location=where,
            hint='set "ssh": {"sudo": true} or choose "trust": "signed" / "trusted-user"',
        )
    if trust == "signed":
        key = host.nix.signing_key_file
        if not key or not Path(key).expanduser().is_file():
            raise InputError(
                f"{host.name}: pushes must be signed, but the signing key file {key or '(none)'} does not exist here",
                location=f"hosts/{host.name}/host.json#/nix/signing_key_file",
                hint="create one with `nix key generate-secret --key-name <name> > FILE` and put its public key "
                "(`nix key convert-secret-to-public < FILE`) into nix.public_keys",
            )
        # whoever can read the key can sign a closure every node trusting it installs as root
        path = Path(key).expanduser()
        if too_open := open_to_others(path.stat()):
            message, hint = refusal("Nix signing key", str(path), too_open)
            raise InputError(f"{host.name}: {message}", location=f"hosts/{host.name}/host.json#/nix/signing_key_file",
                             hint=hint)  # fmt: skip
        if not host.nix.public_keys:
            raise InputError(
                f"{host.name}: pushes are signed, but no public key is declared for the node to trust",
                location=f"hosts/{host.name}/host.json#/nix/public_keys",
                hint="add the output of `nix key convert-secret-to-public < SECRET` to nix.public_keys",
            )
    return trust


def known_hosts_text(entry: HostEntry, address: str, jump: tuple[HostEntry, str] | None = None) -> str | None:
    """known_hosts lines for the pinned keys (node, and jump host); None when host.json names a file instead."""
    lines = []
    for e, addr in [(entry, address), *([jump] if jump else [])]:
        if e.host.ssh.host_key is None:
            return None
        lines.append(nixargv.known_hosts_line(addr, e.host.ssh.port, e.host.ssh.host_key))
    return "".join(lines)


def push_plan(
    entry: HostEntry, address: str, known_hosts: str | None, jump: tuple[HostEntry, str] | None = None
) -> PushPlan:
    """The store URI and ssh options for `nix copy` to `entry` at `address` (the one SSH reached)."""
    host = entry.host
    trust = trust_of(entry)
    become = host.ssh.become if host.ssh.user != "root" and host.ssh.sudo else None
    jump_opt = None
    if jump is not None:
        j, jaddr = jump
        jump_opt = f"{j.host.ssh.user}@{jaddr}:{j.host.ssh.port}"
    identity = str(Path(host.ssh.identity_file).expanduser()) if host.ssh.identity_file else None
    opts = nixargv.ssh_opts(host.ssh.port, identity, known_hosts, jump_opt)
    uri = nixargv.ssh_store_uri(host.ssh.user, address, scheme=host.nix.store_scheme, become=become)
    key = str(Path(host.nix.signing_key_file).expanduser()) if trust == "signed" and host.nix.signing_key_file else None
    return PushPlan(uri, opts, no_check_sigs=trust in ("root", "trusted-user"), sign_with=key)


def _known_hosts_file(entry: HostEntry, address: str, jump: tuple[HostEntry, str] | None, tmp: Path) -> str | None:
    """A known_hosts file with exactly the pinned keys, or host.json's own known_hosts file."""
    text = known_hosts_text(entry, address, jump)
    if text is not None:
        known = tmp / "known_hosts"
        known.write_text(text)
        return str(known)
    return str(Path(entry.host.ssh.known_hosts).expanduser()) if entry.host.ssh.known_hosts else None


async def push(
    entry: HostEntry,
    paths: Sequence[str],
    *,
    address: str,
    jump: tuple[HostEntry, str] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> PushPlan:
    """`nix copy` the closures of `paths` to the node (signing them first for trust=signed); `on_line`: nix's
    stderr lines (`copying path '…' to 'ssh-ng://…'`)."""
    with tempfile.TemporaryDirectory(prefix="mcfleet-nixcopy-") as tmp:
        plan = push_plan(entry, address, _known_hosts_file(entry, address, jump, Path(tmp)), jump)
        if plan.sign_with:
            await run_nix(nixargv.sign_argv(plan.sign_with, paths))
        await run_nix(
            nixargv.copy_argv(plan.store_uri, paths, no_check_sigs=plan.no_check_sigs),
            extra_env={"NIX_SSHOPTS": plan.ssh_opts},
            on_line=on_line,
        )
    return plan


async def diff_closures(before: str, after: str) -> list[str]:
    """`nix store diff-closures` lines (package: old → new, size), when both closures are in the local store."""
    result = await run_nix(nixargv.diff_closures_argv(before, after))
    return [line.rstrip() for line in result.stdout.splitlines() if line.strip()]


async def closure_size(paths: Sequence[str], extra_env: Mapping[str, str] | None = None) -> int:
    """Total NAR size of the closures of `paths` in the local store (for the push event)."""
    result = await run_nix(nixargv.path_info_argv(paths, recursive=True), extra_env=extra_env)
    data = json.loads(result.stdout)
    items = data.values() if isinstance(data, dict) else data
    return sum(int(item.get("narSize", 0)) for item in items)
