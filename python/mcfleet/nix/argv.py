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
    print_build_logs: bool = False,
) -> list[str]:
    """`nix build --json` for one or more attributes; output paths come from the JSON.

    `print_build_logs`: `-L`, the builders' output on stderr (`name> line`), for progress.
    """
    argv = ["nix", "build", "--json", *(flake_ref(flake, a) for a in attrs)]
    if print_build_logs:
        argv.append("-L")
    argv += ["--out-link", out_link] if out_link else ["--no-link"]
    if offline:
        argv.append("--offline")
    if keep_going:
        argv.append("--keep-going")
    return argv


def copy_argv(
    store_uri: str, paths: Sequence[str], *, substitute_on_destination: bool = False, no_check_sigs: bool = False
) -> list[str]:
    """`nix copy --to ssh-ng://user@host path...`: push a closure to a node's store.

    Paths the node already holds are not sent again (nix asks the node which are valid).
    """
    argv = ["nix", "copy", "--to", store_uri]
    if substitute_on_destination:
        argv.append("--substitute-on-destination")
    if no_check_sigs:
        argv.append("--no-check-sigs")
    return [*argv, *paths]


def ssh_store_uri(user: str, address: str, *, scheme: str = "ssh-ng", become: str | None = None) -> str:
    """`ssh-ng://user@host` (or `ssh://` for an old remote nix) for `nix copy`.

    Port, key, host key file and jump host go through NIX_SSHOPTS (`ssh_opts`).  With
    `become` (sudo/doas, non-interactive) the remote store program runs as root: the
    daemon (`nix-daemon --stdio`) for ssh-ng, `nix-store --serve --write` for ssh.
    """
    if scheme not in ("ssh-ng", "ssh"):
        raise ValueError(f"store scheme must be ssh-ng or ssh, not {scheme!r}")
    host = f"[{address}]" if ":" in address and not address.startswith("[") else address
    uri = f"{scheme}://{user}@{host}"
    if become:
        program = "nix-daemon" if scheme == "ssh-ng" else "nix-store"
        uri += f"?remote-program={become}%20-n%20{program}"
    return uri


def ssh_opts(
    port: int = 22,
    identity_file: str | None = None,
    known_hosts: str | None = None,
    jump: str | None = None,
) -> str:
    """NIX_SSHOPTS for `nix copy`: strict host key checking always (never trust on first use).

    `known_hosts` is a file holding exactly the keys host.json pins (the node's and the jump
    host's), so the user's ~/.ssh/known_hosts cannot widen or shadow them.  `jump` is
    OpenSSH's `-J user@host:port`.  Nix splits NIX_SSHOPTS on spaces, so no value may hold one.
    """
    opts = ["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-p", str(port)]
    if identity_file:
        opts += ["-i", identity_file, "-o", "IdentitiesOnly=yes"]
    if known_hosts:
        opts += ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]
    if jump:
        opts += ["-J", jump]
    for value in opts:
        if " " in value:
            raise ValueError(f"NIX_SSHOPTS cannot carry a value with a space: {value!r}")
    return " ".join(opts)


def known_hosts_line(address: str, port: int, key: str) -> str:
    """One known_hosts line for `key` at `address:port` (OpenSSH's `[host]:port` form off port 22)."""
    host = address if port == 22 else f"[{address}]:{port}"
    return f"{host} {key}\n"


def sign_argv(key_file: str, paths: Sequence[str]) -> list[str]:
    """`nix store sign --key-file K --recursive`: sign a closure locally before pushing it."""
    return ["nix", "store", "sign", "--key-file", key_file, "--recursive", *paths]


def diff_closures_argv(before: str, after: str) -> list[str]:
    """`nix store diff-closures OLD NEW`: package version and size changes between two systems."""
    return ["nix", "store", "diff-closures", before, after]


def path_info_argv(paths: Sequence[str], *, store_uri: str | None = None, recursive: bool = False) -> list[str]:
    """`nix path-info --json`: validity, references, signatures of paths (locally or in a node's store)."""
    argv = ["nix", "path-info", "--json"]
    if recursive:
        argv.append("--recursive")
    if store_uri:
        argv += ["--store", store_uri]
    return [*argv, *paths]


# The commands below run ON the node (over the SSH connection, as root).  They are the
# classic commands every NixOS has, so they need no flakes on the node.

SYSTEM_PROFILE = "/nix/var/nix/profiles/system"
SWITCH_GOALS = ("switch", "boot", "test", "dry-activate")


def check_validity_argv(paths: Sequence[str]) -> list[str]:
    """`nix-store --check-validity` on the node: exit 0 when every path is already in its store."""
    return ["nix-store", "--check-validity", *paths]


def set_profile_argv(path: str, profile: str = SYSTEM_PROFILE) -> list[str]:
    """`nix-env -p /nix/var/nix/profiles/system --set <toplevel>`: a new system generation."""
    return ["nix-env", "-p", profile, "--set", path]


def switch_generation_argv(generation: int, profile: str = SYSTEM_PROFILE) -> list[str]:
    return ["nix-env", "-p", profile, "--switch-generation", str(generation)]


def delete_generations_argv(generations: Sequence[int], profile: str = SYSTEM_PROFILE) -> list[str]:
    return ["nix-env", "-p", profile, "--delete-generations", *(str(g) for g in generations)]


def switch_argv(toplevel: str, goal: str) -> list[str]:
    """`<toplevel>/bin/switch-to-configuration <goal>` (goal: switch, boot, test, dry-activate)."""
    if goal not in SWITCH_GOALS:
        raise ValueError(f"goal must be one of {', '.join(SWITCH_GOALS)}, not {goal!r}")
    return [f"{toplevel}/bin/switch-to-configuration", goal]


def instantiate_eval_argv(expr: str) -> list[str]:
    """`nix-instantiate --eval --strict --json -E <expr>`: pure nix/lib evaluation without a flake."""
    return ["nix-instantiate", "--eval", "--strict", "--json", "-E", expr]


def parse_argv(path: str) -> list[str]:
    return ["nix-instantiate", "--parse", path]
