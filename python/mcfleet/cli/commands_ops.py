"""`mcfleet ssh HOST`, `mcfleet exec --on SEL -- CMD`, `mcfleet logs HOST [SERVICE|agent]`.

`ssh` hands over to OpenSSH with the fleet's own ssh_config and known_hosts (written from the
pinned host keys into .mcfleet/), so the host-key check is as strict as mcfleet's.  `exec` runs
over mcfleet's own connections (asyncssh, same checks), all hosts at once.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import typer

from mcfleet.cli.complete import complete_service
from mcfleet.cli.fleetdir import fleet_root
from mcfleet.cli.log_lines import JOURNAL_MARK, PLAIN_MARK, LogLines
from mcfleet.cli.options import COMMAND_TIMEOUT, CONNECT
from mcfleet.cli.output import emit_json, use_color
from mcfleet.cli.targets import HOST_ARG, ON_OPT, YES_OPT, confirm_hosts, one_host, one_service, selected
from mcfleet.errors import EXIT_FAILURE, InputError, McfleetError, ToolMissing
from mcfleet.util.terminal_text import terminal_safe

if TYPE_CHECKING:
    from mcfleet.fleet.load import HostEntry, LoadedFleet
    from mcfleet.transport.base import BecomeRefused
    from mcfleet.transport.ssh import SshConnection, SshPool

# asyncssh is imported where a command connects (`exec --help`, `logs --help` stay light).

SERVICE_USER = "mcp"  # services run as rootless podman containers of the mcp account
PASS_THROUGH = {"allow_interspersed_args": False, "ignore_unknown_options": True}


def _loaded() -> LoadedFleet:
    from mcfleet.fleet.load import load_fleet

    loaded = load_fleet(fleet_root())
    if loaded.fleet is None:
        first = loaded.findings[0]
        raise InputError(first.message, location=first.location(), hint=first.hint)
    return loaded


def ssh_argv(loaded: LoadedFleet, entry: HostEntry, command: list[str], *, batch: bool) -> list[str]:
    """The OpenSSH command line for `mcfleet ssh` (after writing the fleet's ssh files)."""
    from mcfleet.fleet.sshfiles import write_ssh_files

    _known_hosts, config = write_ssh_files(loaded)
    argv = ["ssh", "-F", str(config)]
    if batch:
        argv += ["-o", "BatchMode=yes"]
    argv.append(entry.host.name)
    if command:
        argv += ["--", *command]
    return argv


def ssh(
    host: str = HOST_ARG,
    command: list[str] | None = typer.Argument(None, help="A command to run instead of a shell.", metavar="COMMAND"),
    print_only: bool = typer.Option(False, "--print", help="Print the ssh command instead of running it."),
    json_out: bool = typer.Option(False, "--json", help="With --print: the command and files as JSON."),
) -> None:
    """Open a shell (or run a command) on one host, with its pinned host key.

    Writes .mcfleet/known_hosts (the pinned keys) and .mcfleet/ssh_config (address, port,
    user, identity, jump per host) and runs OpenSSH with them: a changed host key is refused
    exactly as mcfleet refuses it.  Without a terminal, BatchMode=yes (never a password prompt).

    Examples:

      mcfleet ssh rift

      mcfleet ssh rift systemctl status mcp-agent

      mcfleet ssh rift -- ls -la /srv      # `--` after the host is optional

      ssh -F .mcfleet/ssh_config rift      # after one `mcfleet ssh`, plain OpenSSH works too

      mcfleet ssh --print --json rift      # options before the host: after it, all goes to ssh
    """
    loaded = _loaded()
    entry = one_host(loaded, host, "ssh")
    words = list(command or [])
    if words[:1] == ["--"]:  # `ssh HOST -- cmd`: everything after the host comes here as is, `--` included
        words = words[1:]
    argv = ssh_argv(loaded, entry, words, batch=not sys.stdin.isatty())
    if print_only:
        if json_out:
            emit_json({"host": entry.host.name, "argv": argv, "ssh_config": argv[2]})
        else:
            typer.echo(shlex.join(argv))
        return
    if shutil.which("ssh") is None:
        raise ToolMissing("the OpenSSH client (ssh) is not installed", hint="apt-get install -y openssh-client")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp("ssh", argv)  # replaces this process: ssh's exit code is the command's


@dataclass
class ExecResult:
    host: str
    exit: int | None = None
    signal: str | None = None  # the signal that ended the command ("TERM"); exit is then -1
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "exit": self.exit,
            "signal": self.signal,
            "ok": self.exit == 0,
            "stdout": "".join(self.stdout),
            "stderr": "".join(self.stderr),
            "error": self.error,
            "seconds": round(self.seconds, 3),
        }


class Prefixer:
    """Writes each host's lines as `host | line` (stderr: `host ! line`), whole lines only.

    On a terminal a line's control characters are shown escaped (util/terminal_text.py): a node's output
    cannot retitle or clear the operator's terminal.  Into a pipe or a file the lines go as they are."""

    def __init__(self, names: list[str], *, quiet: bool) -> None:
        self.width = max((len(n) for n in names), default=0)
        self.quiet = quiet
        self.color = use_color()

    def line(self, host: str, text: str, *, err: bool = False) -> None:
        if self.quiet:
            return
        mark = "!" if err else "|"
        head = f"{host:<{self.width}} {mark} "
        if self.color:
            head = f"\x1b[{'31' if err else '36'}m{head}\x1b[0m"
        stream = sys.stderr if err else sys.stdout
        text = text.rstrip("\n")
        stream.write(head + (terminal_safe(text) if _is_terminal(stream) else text) + "\n")


async def _pump(stream: Any, sink: list[str], emit: Any) -> None:
    async for line in stream:
        if not line:  # asyncssh may yield one empty read at end of stream
            continue
        sink.append(line)
        emit(line)


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(callable(isatty) and isatty())
    except (OSError, ValueError):  # a closed or detached stream is no terminal
        return False


def escalated(node: SshConnection, line: str) -> str:
    """`line` run as root: through the host's `sudo -n` / `doas -n` when the login is not root."""
    return f"{node.become} -n sh -c {shlex.quote(line)}" if node.become else line


def refused_rule(node: SshConnection, stderr: list[str]) -> BecomeRefused | None:
    """The missing sudo/doas rule, when escalation is what failed."""
    from mcfleet.transport.base import become_refused

    return become_refused(node.become, node.user, "".join(stderr), node.name)


def in_own_group(node: SshConnection, line: str, as_root: bool) -> str:
    """`line` as exec runs it, after its process group id as stderr's first line (a PGID_MARK line): sshd
    starts a command without a terminal as the leader of a new session and process group, and leaves it
    running when its channel closes, so after a timeout or Ctrl-C mcfleet kills that group on the node.
    `exec` keeps that pid for the command itself, so its exit status and signal are still what sshd
    reports.  Without --as-root the line runs in the login's own shell ($SHELL), as `ssh host LINE` does."""
    from mcfleet.transport.base import PGID_MARK

    # escalated: `sudo -n sh -c LINE`; a root login (or no --as-root): the login's shell, as ssh runs it
    inner = escalated(node, line) if as_root and node.become else f'"${{SHELL:-/bin/sh}}" -c {shlex.quote(line)}'
    return f'echo "{PGID_MARK}$$" >&2; exec {inner}'


async def run_on(  # noqa: PLR0917 (one host's run: every part is needed)
    pool: SshPool, entry: HostEntry, line: str, out: Prefixer, limit: float, as_root: bool = False
) -> ExecResult:
    import asyncio

    from mcfleet.transport.base import split_pgid

    name = entry.host.name
    result = ExecResult(name)
    started = time.monotonic()
    group: list[int] = []  # the command's process group on the node, once its first stderr line said it
    node: SshConnection | None = None

    def stderr_line(text: str) -> None:
        if not group and not result.stderr:
            pgid, _rest = split_pgid(text)
            if pgid is not None:
                group.append(pgid)
                return
        result.stderr.append(text)
        out.line(name, text, err=True)

    try:
        node = await pool.connect(entry)
        proc = await node.conn.create_process(in_own_group(node, line, as_root))
        async with asyncio.timeout(limit or None):
            await asyncio.gather(
                _pump(proc.stdout, result.stdout, lambda t: out.line(name, t)),
                _pump(proc.stderr, [], stderr_line),
            )
            completed = await proc.wait()
        result.exit = completed.exit_status if completed.exit_status is not None else 255
        if completed.exit_signal:  # sshd reports a command killed by a signal as exit -1 with its name
            result.signal = str(completed.exit_signal[0])
        if as_root and result.exit and (refused := refused_rule(node, result.stderr)) is not None:
            result.error = f"{refused.message}; {refused.hint}"
    except TimeoutError:
        killed = node is not None and await _end_group(node, group, as_root)
        result.error = f"did not finish within {limit:g} s" + ("; killed on the node" if killed else "")
    except asyncio.CancelledError:  # Ctrl-C: what the command started on the node ends with it
        if node is not None:
            await asyncio.shield(_end_group(node, group, as_root))
        raise
    except McfleetError as exc:
        result.error = exc.message
    except OSError as exc:
        result.error = f"connection lost: {exc}"
    result.seconds = time.monotonic() - started
    return result


async def _end_group(node: SshConnection, group: list[int], as_root: bool) -> bool:
    """Kill the exec's process group on the node (as whoever started it); False when it is not known."""
    return bool(group) and await node.kill_group(group[0], node.become if as_root else None)


def exec_(  # noqa: PLR0917 (typer maps parameters to options)
    command: list[str] = typer.Argument(
        ..., help="The command (after --); one argument is a shell line.", metavar="COMMAND"
    ),
    on: list[str] | None = ON_OPT,
    yes: bool = YES_OPT,
    json_out: bool = typer.Option(False, "--json", help="Print each host's exit code and output as JSON."),
    timeout: float = COMMAND_TIMEOUT,
    connect_timeout: float = CONNECT,
    as_root: bool = typer.Option(
        False, "--as-root", help="Run as root: through the host's `sudo -n` / `doas -n` when its login is not root."
    ),
) -> None:
    """Run a command on the selected hosts in parallel; output prefixed by host.

    Runs as each host's ssh user (`ssh.user` in host.json), with its pinned host key; with
    --as-root as root, escalating the way mcfleet itself does (`ssh.become -n`, never a
    password prompt; a missing rule is named).  Every output line is prefixed `HOST | `
    (stderr: `HOST ! `); then one line per host with its exit code.  Exit 0 when every host
    exited 0, else 1.  More than one host asks first (--yes).

    Examples:

      mcfleet exec --on @edge --yes -- uptime

      mcfleet exec --on rift -- 'systemctl is-active mcp-agent'

      mcfleet exec --on rift --as-root -- systemctl restart mcp-agent

      mcfleet exec --on 'node*' --yes --json -- cat /etc/hostname | jq '.hosts[] | {host, exit}'
    """
    if not command:
        raise InputError("no command to run", location="mcfleet exec", hint="e.g. mcfleet exec --on rift -- uptime")
    loaded = _loaded()
    entries = selected(loaded, on)
    names = [e.host.name for e in entries]
    line = command[0] if len(command) == 1 else shlex.join(command)
    shown = line if len(line) <= 60 else line[:59] + "…"
    confirm_hosts(names, action="exec", yes=yes, effect=f"would run `{shown}` on")
    out = Prefixer(names, quiet=json_out)

    import asyncio

    from mcfleet.transport.ssh import SshOptions, SshPool

    async def go() -> list[ExecResult]:
        async with SshPool(SshOptions(connect_timeout=connect_timeout), hosts=loaded.hosts) as pool:
            return list(await asyncio.gather(*(run_on(pool, e, line, out, timeout, as_root) for e in entries)))

    results = asyncio.run(go())
    ok = all(r.exit == 0 for r in results)
    if json_out:
        emit_json({"command": line, "ok": ok, "hosts": [r.as_dict() for r in results]})
    else:
        for r in results:
            status = f"exit {r.exit}" if r.signal is None else f"killed by SIG{r.signal}"
            status = status if r.error is None else f"failed: {r.error}"
            typer.echo(terminal_safe(f"{r.host:<{out.width}} = {status} ({r.seconds:.1f} s)"), err=True)
    if not ok:
        raise typer.Exit(EXIT_FAILURE)


JOURNAL_FIELDS = "MESSAGE,CONTAINER_PARTIAL_MESSAGE"
# The agent's line prints this on stderr and exits NO_SYSTEMD_EXIT when PID 1 is not systemd.
NO_SYSTEMD_MARK = "mcfleet-logs: no systemd"
NO_SYSTEMD_EXIT = 5  # the service line uses 3 and 4


def logs_command(entry: HostEntry, what: str, *, lines: int, follow: bool) -> str:
    """The remote shell line that prints the agent's or a service's log."""
    if what == "agent":
        unit = shlex.quote(entry.host.agent.unit)
        # The agent runs as a systemd unit: without systemd as PID 1 there is no journal of it, and
        # journalctl would only say "-- No entries --" (exit 0).  /run/systemd/system exists exactly
        # when systemd is PID 1 (sd_booted()), checked in the same command: no second round trip.
        return (
            f"[ -d /run/systemd/system ] || {{ echo {shlex.quote(NO_SYSTEMD_MARK)} >&2; exit {NO_SYSTEMD_EXIT}; }}; "
            f"exec journalctl -u {unit} -n {lines} --no-pager -o short-iso{' -f' if follow else ''}"
        )
    one_service(entry, what, "logs", also="; or `agent` for the agent's own log")
    user = shlex.quote(SERVICE_USER)
    label = shlex.quote(f"label=io.mcfleet.service={what}")
    podman = f"runuser -u {user} -- env XDG_RUNTIME_DIR=/run/user/$(id -u {user}) podman"
    follow_flag = " -f" if follow else ""
    fmt = shlex.quote("{{.HostConfig.LogConfig.Type}}")
    # - cd /: podman stats its working folder, and root's home is not the service user's to read.
    # - journald log driver (podman's default under systemd): the lines are journal entries with
    #   CONTAINER_NAME=<name>, read by root (the service user may not read a volatile journal);
    #   several matches of one field are OR-ed; sent as JSON and joined back into lines by the
    #   client (cli/log_lines.py).  Other drivers (k8s-file): `podman logs`, its stderr (the
    #   container's stderr) merged into stdout, in order.
    # - set -f: $names (the service account's podman lists them) is split into words, never globbed by root
    return (
        f'set -f; cd / && names=$({podman} ps -a --filter {label} --format "{{{{.Names}}}}") || exit 4; '
        f'[ -n "$names" ] || {{ echo "no container of {what} on this node (not deployed yet?)" >&2; exit 3; }}; '
        f"driver=$({podman} container inspect --format {fmt} $names | head -n 1) || exit 4; "
        'if [ "$driver" = journald ]; then '
        'set --; for n in $names; do set -- "$@" "CONTAINER_NAME=$n"; done; '
        f"echo {shlex.quote(JOURNAL_MARK)}; "
        f'exec journalctl "$@" -n {lines} --no-pager -o json --output-fields={JOURNAL_FIELDS}{follow_flag}; '
        f"else echo {shlex.quote(PLAIN_MARK)}; exec {podman} logs --tail {lines}{follow_flag} $names 2>&1; fi"
    )


def logs(
    host: str = HOST_ARG,
    what: str = typer.Argument(
        "agent",
        help="A service on that host, or `agent` (the default).",
        autocompletion=complete_service,
        metavar="WHAT",
    ),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines (Ctrl-C stops)."),
    lines: int = typer.Option(100, "--lines", "-n", min=1, help="How many of the last lines to show.", metavar="N"),
    json_out: bool = typer.Option(False, "--json", help='One JSON object per line: {"host", "source", "line"}.'),
) -> None:
    """Show the agent's or a service's logs on one host (-f to follow).

    The agent's log is its systemd unit's journal; a service's log is its containers' output,
    stdout and stderr (podman logs, as the service user).  Read-only.  Ctrl-C stops -f (exit 130).

    Examples:

      mcfleet logs rift

      mcfleet logs rift mcns -n 50

      mcfleet logs rift agent -f

      mcfleet logs rift mcns -f --json | jq -r .line
    """
    loaded = _loaded()
    entry = one_host(loaded, host, "logs")
    line = logs_command(entry, what, lines=lines, follow=follow)
    service_lines = LogLines() if what != "agent" else None

    def show(text: str) -> None:
        write(service_lines.feed(text) if service_lines is not None else text)

    # What a container or the journal holds is anyone's to write.  On a terminal its control characters
    # are shown escaped (util/terminal_text.py: ESC as `\x1b`), never run; into a pipe or a file the lines
    # go as they are (what `| grep`, `> saved.log` want); --json escapes them itself.
    on_terminal = not json_out and _is_terminal(sys.stdout)

    def write(text: str) -> None:
        if not text:
            return
        if json_out:
            import json

            record = {"host": entry.host.name, "source": what, "line": text.rstrip("\n")}
            sys.stdout.write(json.dumps(record) + "\n")
        else:
            sys.stdout.write(terminal_safe(text) if on_terminal else text)
        sys.stdout.flush()

    import asyncio

    from mcfleet.transport.ssh import SshOptions, SshPool

    async def go() -> ExecResult:
        async with SshPool(SshOptions(), hosts=loaded.hosts) as pool:
            node = await pool.connect(entry)
            proc = await node.conn.create_process(escalated(node, line))
            result = ExecResult(entry.host.name)
            await asyncio.gather(
                _pump(proc.stdout, result.stdout, show),
                _pump(proc.stderr, result.stderr, lambda t: None),
            )
            if service_lines is not None:
                write(service_lines.end())
            done = await proc.wait()
            result.exit = done.exit_status
            if result.exit and (refused := refused_rule(node, result.stderr)) is not None:
                raise refused
            return result

    result = asyncio.run(go())
    if what == "agent" and result.exit == NO_SYSTEMD_EXIT and NO_SYSTEMD_MARK in "".join(result.stderr):
        name, unit = entry.host.name, entry.host.agent.unit
        raise McfleetError(
            f"{name} does not run systemd (PID 1): the agent's log is the journal of {unit}, "
            "which only exists under systemd",
            location=f"{name}: logs",
            hint=f"the agent cannot run on {name} (`mcfleet plan --on {name}` refuses it); a service's log "
            f"needs no systemd: `mcfleet logs {name} SERVICE`",
        )
    if result.exit:
        # podman's own error is in the merged stream (2>&1) when it is not on stderr
        detail = "".join(result.stderr).strip().splitlines() or "".join(result.stdout).strip().splitlines()
        what_failed = "the agent's journal" if what == "agent" else f"the logs of {what}"
        raise McfleetError(
            f"could not read {what_failed}: {detail[-1] if detail else f'exit {result.exit}'}",
            location=f"{entry.host.name}: logs",
            hint="the agent's log needs systemd's journal on the node (`mcfleet ssh HOST` to look around)"
            if what == "agent"
            else "deploy the service first (`mcfleet apply --on HOST`), or check `mcfleet status`",
        )


def register(app: typer.Typer) -> None:
    app.command("ssh", context_settings=PASS_THROUGH)(ssh)
    app.command("exec")(exec_)
    app.command("logs")(logs)
