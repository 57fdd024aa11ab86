"""`mcfleet-agent`: the node daemon (installed as /srv/mcp/mcp-agent, run by mcp-agent.service).

Examples:
  mcfleet-agent                                   # serve on /srv/mcp/mcp-agent.sock
  mcfleet-agent --socket /tmp/a.sock --podman unix:///run/podman/podman.sock --registry /tmp/a.db
  mcfleet-agent --version                         # version, arch, bundle hash
  mcfleet-agent --probe                           # the running agent's health (and why not); 0 if SERVING

Every flag has an environment variable (MCFLEET_AGENT_SOCKET, MCFLEET_PODMAN_URL,
MCFLEET_AGENT_REGISTRY, MCFLEET_AGENT_USERS=mcp,..., MCFLEET_AGENT_STAGE_TIMEOUT,
MCFLEET_AGENT_STOP_TIMEOUT, MCFLEET_AGENT_LOG_LEVEL) so the systemd unit can stay a one-liner.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path

from mcfleet import __version__
from mcfleet.agent.events import BOOT_RETRY_S
from mcfleet.agent.facts import bundle_sha256
from mcfleet.errors import EXIT_FAILURE, EXIT_INTERRUPTED, McfleetError

# Only what --version needs is imported up front: grpc, pydantic and podman load when serving
# (under qemu-user on a small arm64 board every import counts).


def default_podman_url() -> str:
    """Rootless podman of the agent's user, or the rootful socket when run as root."""
    if os.getuid() == 0:
        return "unix:///run/podman/podman.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR", f"/run/user/{os.getuid()}")
    return f"unix://{runtime}/podman/podman.sock"


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="mcfleet-agent",
        description="mcfleet node agent: gRPC on a unix socket (health, Info, Facts, containers).",
        epilog=(__doc__ or "").split("Examples:", 1)[-1].join(["Examples:", ""]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--socket", default=env("MCFLEET_AGENT_SOCKET", "/srv/mcp/mcp-agent.sock"), help="unix socket to serve on"
    )
    p.add_argument("--podman", default=env("MCFLEET_PODMAN_URL") or default_podman_url(), help="podman API socket URL")
    p.add_argument(
        "--registry",
        default=env("MCFLEET_AGENT_REGISTRY", "/srv/mcp/mcfleet-agent.db"),
        help="SQLite registry of what should run",
    )
    p.add_argument("--user", action="append", dest="users", help="pinned user to report (repeatable; default mcp)")
    p.add_argument(
        "--stage-timeout",
        type=float,
        default=float(env("MCFLEET_AGENT_STAGE_TIMEOUT", "120")),
        help="seconds a boot stage may take to get healthy (default 120)",
    )
    p.add_argument(
        "--stop-timeout",
        type=int,
        default=int(env("MCFLEET_AGENT_STOP_TIMEOUT", "10")),
        help="seconds podman waits after SIGTERM before SIGKILL (default 10)",
    )
    p.add_argument(
        "--boot-retry",
        type=float,
        default=float(env("MCFLEET_AGENT_BOOT_RETRY", str(BOOT_RETRY_S))),
        help="seconds before a failed boot sequence is tried again, doubling up to 300 (default 5; 0: never)",
    )
    p.add_argument("--no-boot", action="store_true", help="do not start registered services at start-up")
    p.add_argument("--log-level", default=env("MCFLEET_AGENT_LOG_LEVEL", "INFO"), help="DEBUG, INFO, WARNING...")
    p.add_argument("--version", action="store_true", help="print version, arch and bundle hash, then exit")
    p.add_argument("--probe", action="store_true", help="check the health of the agent on --socket, then exit")
    return p


async def _probe(socket: str) -> int:
    from mcfleet.agent.client import AgentClient

    async with AgentClient(socket, timeout=5) as client:
        status = await client.health_status()
        reason = (await client.info()).health_reason if status != "SERVING" else ""
    print(f"{status}: {reason}" if reason else status)
    return 0 if status == "SERVING" else EXIT_FAILURE


# syslog priorities by logging level: a line that starts with "<N>" is stored by journald at that
# priority (and the prefix dropped), so `journalctl -u mcp-agent -p warning` finds the agent's warnings.
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"<{_PRIORITY.get(record.levelno, 6)}>{super().format(record)}"


def stderr_is_journal(environ: Mapping[str, str], fd: int = 2) -> bool:
    """systemd sets JOURNAL_STREAM=DEVICE:INODE of the journal stream it connects; the variable is
    inherited by children whose stderr is something else (a terminal), so the file must match it."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (OSError, ValueError):
        return False


def log_formatter(journal: bool) -> logging.Formatter:
    """To the journal (which stamps every line itself) each line carries its priority and no second
    timestamp; elsewhere (a terminal, a test) the time is kept."""
    if journal:
        return _JournalFormatter("%(levelname)s %(name)s: %(message)s")
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        sha = bundle_sha256()
        print(
            f"mcfleet-agent {__version__} ({platform.machine()}, python {platform.python_version()}"
            f"{', bundle ' + sha if sha else ''})"
        )
        return 0
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(log_formatter(stderr_is_journal(os.environ)))
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    from mcfleet.agent.server import AgentConfig, serve

    users = args.users or [u for u in os.environ.get("MCFLEET_AGENT_USERS", "mcp").split(",") if u]
    config = AgentConfig(
        socket=Path(args.socket),
        podman_url=args.podman,
        registry=Path(args.registry),
        users=users,
        stage_timeout=args.stage_timeout,
        stop_timeout=args.stop_timeout,
        boot=not args.no_boot,
        boot_retry_s=args.boot_retry,
    )
    try:
        if args.probe:
            return asyncio.run(_probe(args.socket))
        asyncio.run(serve(config))
    except McfleetError as exc:
        print(exc.format(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    _exit_now()
    return 0  # not reached


def _exit_now() -> None:
    """Exit 0 without the interpreter's teardown, once serve() has closed everything it opened.

    serve() has stopped the server, removed the socket and closed podman's client and the
    registry, and asyncio.run() has ended every task and thread; what is left is freeing the
    modules (grpc, pydantic...): 64-94 ms -> 7-10 ms from SIGTERM to exit on a lab node, time
    an upgrade waits with the agent down.  Logs and output are flushed first."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
