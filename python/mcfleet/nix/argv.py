"""argv builders for the `nix` commands mcfleet runs, and the environment they run in.

Pure functions (no process is started here) so tests can check the exact command
lines.  They target Nix 2.8 (Debian 12's nix-bin) as well as current Nix:
- settings go through NIX_CONFIG, not flags that 2.8 may lack;
- `nix build --json --no-link` reports output paths (2.8 has no --print-out-paths);
- flake references are `<flake>#<attr>`; the flake sees only git-tracked files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

# experimental-features: flakes and the `nix` command are still opt-in on 2.8.
# sandbox/build-users-group: mcfleet's own checks build as the invoking user
# (no nixbld group on a plain Debian install).  substituters: none by default, so
# an offline machine never waits on cache.nixos.org; callers may override.
# eval-cache: parallel evaluations of one flake share an SQLite cache that Nix 2.8
# reports as "busy" and then misreads ("attribute 'packages.x86_64-linux.lib' is
# unexpectedly missing"); mcfleet evaluates hosts in parallel, so it is off.
DEFAULT_SETTINGS: dict[str, str] = {
    "experimental-features": "nix-command flakes",
    "sandbox": "false",
    "build-users-group": "",
    "substituters": "",
    "eval-cache": "false",
}


def nix_config(overrides: Mapping[str, str] | None = None) -> str:
    """NIX_CONFIG text: one `key = value` line per setting."""
    settings = {**DEFAULT_SETTINGS, **(overrides or {})}
    return "".join(f"{key} = {value}\n" for key, value in settings.items())


def nix_env(overrides: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a nix process: the caller's, plus NIX_CONFIG."""
    env = dict(os.environ if base is None else base)
    env["NIX_CONFIG"] = nix_config(overrides)
    return env


def flake_ref(flake: str, attr: str) -> str:
    return f"{flake}#{attr}"


def eval_argv(
    flake: str,
    attr: str,
    *,
    apply: str | None = None,
    json_out: bool = True,
    raw: bool = False,
    offline: bool = False,
) -> list[str]:
    """`nix eval <flake>#<attr>`, as JSON by default (--raw for a plain string)."""
    argv = ["nix", "eval", flake_ref(flake, attr)]
    if raw:
        argv.append("--raw")
    elif json_out:
        argv.append("--json")
    if apply is not None:
        argv += ["--apply", apply]
    if offline:
        argv.append("--offline")
    return argv


def build_argv(
    flake: str,
    attrs: Sequence[str],
    *,
    out_link: str | None = None,
    offline: bool = False,
    keep_going: bool = False,
) -> list[str]:
    """`nix build --json` for one or more attributes; output paths come from the JSON."""
    argv = ["nix", "build", "--json", *(flake_ref(flake, a) for a in attrs)]
    argv += ["--out-link", out_link] if out_link else ["--no-link"]
    if offline:
        argv.append("--offline")
    if keep_going:
        argv.append("--keep-going")
    return argv


def copy_argv(
    store_uri: str, paths: Sequence[str], *, substitute_on_destination: bool = False, no_check_sigs: bool = False
) -> list[str]:
    """`nix copy --to ssh://host path...`: push a closure to a node's store."""
    argv = ["nix", "copy", "--to", store_uri]
    if substitute_on_destination:
        argv.append("--substitute-on-destination")
    if no_check_sigs:
        argv.append("--no-check-sigs")
    return [*argv, *paths]


def ssh_store_uri(user: str, address: str) -> str:
    """`ssh://user@host` for `nix copy`; port and key go through NIX_SSHOPTS (`ssh_opts`)."""
    host = f"[{address}]" if ":" in address and not address.startswith("[") else address
    return f"ssh://{user}@{host}"


def ssh_opts(port: int = 22, identity_file: str | None = None, known_hosts: str | None = None) -> str:
    """NIX_SSHOPTS for `nix copy`: strict host key checking always (never trust on first use)."""
    opts = ["-o", "StrictHostKeyChecking=yes", "-p", str(port)]
    if identity_file:
        opts += ["-i", identity_file]
    if known_hosts:
        opts += ["-o", f"UserKnownHostsFile={known_hosts}"]
    return " ".join(opts)


def instantiate_eval_argv(expr: str) -> list[str]:
    """`nix-instantiate --eval --strict --json -E <expr>`: pure nix/lib evaluation without a flake."""
    return ["nix-instantiate", "--eval", "--strict", "--json", "-E", expr]


def parse_argv(path: str) -> list[str]:
    return ["nix-instantiate", "--parse", path]
