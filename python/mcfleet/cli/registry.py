"""The command list and the global options, without importing typer or any command module.

`mcfleet --help` prints from this table (a test keeps each summary equal to the first line
of the command's own help), so listing the commands costs no import of asyncssh, grpc,
pydantic or typer.
"""

from __future__ import annotations

from mcfleet import __version__

# name -> (module under mcfleet.cli that registers it, one-line summary); in --help order.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("commands_init", "Create a new fleet folder: fleet.json, one host, schemas wired, .gitignore."),
    "validate": ("commands_fleet", "Check every host and service file, then the fleet-wide rules."),
    "hosts": ("commands_fleet", "List the inventory from the files alone (no SSH, no Nix)."),
    "routes": (
        "commands_fleet",
        "List every route and DNS name the files declare: its proxy, backend, certificate and A record.",
    ),
    "render": ("commands_fleet", "Print the exact `podman run` command of each component of a service."),
    "plan": ("commands_plan", "Observe the selected hosts and show what `apply` would change."),
    "show": ("commands_show", "Render a plan saved by `mcfleet plan -o` (text, or --json)."),
    "apply": (
        "commands_apply",
        "Converge the selected hosts: build, push, activate (health check, rollback), then the later steps.",
    ),
    "deploy": ("commands_apply", "Validate, plan and apply one host: what `nix run .#deploy -- HOST` runs."),
    "provision": ("commands_apply", "Prepare a Debian node: the pinned `mcp` user, resolvers, /srv/mcp/, the agent."),
    "status": ("commands_status", "One table of the fleet: reachable, agent version and health, services up, drift."),
    "ssh": ("commands_ops", "Open a shell (or run a command) on one host, with its pinned host key."),
    "exec": ("commands_ops", "Run a command on the selected hosts in parallel; output prefixed by host."),
    "logs": ("commands_ops", "Show the agent's or a service's logs on one host (-f to follow)."),
    "journal": ("commands_journal", "Show the local apply journal (.mcfleet/journal.jsonl) as a table."),
    "forget": (
        "commands_forget",
        "Stop listing a host whose folder left hosts/ (a plan's `gone`); nothing on its node changes.",
    ),
    "agent": ("commands_agent", "The node agent: upgrade, status, recover, restart/stop/start a service."),
    "snapshot": (
        "commands_snapshot",
        "Snapshot a service's folder /srv/SERVICE/ on its node (stopped meanwhile, started again).",
    ),
    "restore": (
        "commands_snapshot",
        "Restore /srv/SERVICE/ on its node from a snapshot there (the current folder is kept aside).",
    ),
    "snapshots": ("commands_snapshot", "List the snapshots in root's store on a node; --prune removes the older ones."),
    "lab": ("commands_lab", "A real local fleet to try mcfleet on (root needed)."),
    "nix": ("commands_nix", "The Nix side: pure nix/lib validation, per-host values, flake attributes."),
    "schema": ("commands_fleet", "JSON Schemas of the fleet files."),
    "secret": ("commands_secret", "The fleet's age-encrypted secrets."),
    "completion": ("commands_completion", "Print the shell completion script (bash, zsh, fish)."),
}

LAZY_COMMANDS: dict[str, str] = {name: module for name, (module, _summary) in COMMANDS.items()}

# Global options: accepted before the command and, moved in front by main(), after it too.
GLOBAL_FLAGS = ("--debug", "--no-color")
GLOBAL_VALUED = ("-C", "--fleet")

ROOT_SUMMARY = "Declarative fleet toolkit: validate host files, plan and apply changes to NixOS and Debian nodes."
ROOT_EXAMPLES = (
    "  mcfleet validate              # check every host and service file\n"
    "  mcfleet hosts --on @edge      # list the edge nodes\n"
    "  mcfleet plan --on rift        # what would change on rift\n"
    "  mcfleet apply --all           # converge the whole fleet\n"
    "  mcfleet -C ~/fleet status     # a fleet elsewhere (or set MCFLEET_FLEET)"
)
GLOBAL_OPTIONS_HELP = (
    ("-C, --fleet DIR", "The fleet folder (env MCFLEET_FLEET); default: the nearest folder upward with fleet.json."),
    ("--debug", "Show tracebacks for errors."),
    ("--no-color", "No colours (also: NO_COLOR set, or output not a terminal)."),
    ("--version", "Print the version."),
    ("-h, --help", "Show this message and exit."),
)


def root_help() -> str:
    """`mcfleet --help`, from the table above."""
    width = max(len(n) for n in COMMANDS) + 2
    opt_width = max(len(o) for o, _ in GLOBAL_OPTIONS_HELP) + 2
    lines = [
        "Usage: mcfleet [OPTIONS] COMMAND [ARGS]...",
        "",
        f"  {ROOT_SUMMARY}",
        "",
        "  Global options go before or after the command.  Exit codes: 0 ok, 1 failure",
        "  or refusal, 2 invalid input or usage, 130 interrupted (plan --detailed-exitcode:",
        "  0 no changes, 2 changes pending, 1 anything else).",
        "",
        "Examples:",
        "",
        ROOT_EXAMPLES,
        "",
        "Options:",
        *(f"  {opt:<{opt_width}}{text}" for opt, text in GLOBAL_OPTIONS_HELP),
        "",
        "Commands:",
        *(f"  {name:<{width}}{summary}" for name, (_m, summary) in COMMANDS.items()),
    ]
    return "\n".join(lines) + "\n"


def version_text() -> str:
    return f"mcfleet {__version__}"


def hoist_globals(argv: list[str]) -> list[str]:
    """Move global options written after the command in front of it (`mcfleet plan --debug`).

    Stops at `--`: what follows belongs to a remote command (`mcfleet exec -- ls -C`).
    """
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg in GLOBAL_FLAGS:
            front.append(arg)
        elif arg in GLOBAL_VALUED and i + 1 < len(argv):
            front.extend(argv[i : i + 2])
            i += 1
        elif arg.startswith("--fleet="):
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest
