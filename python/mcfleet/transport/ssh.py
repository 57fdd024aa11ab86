"""SSH transport (asyncssh): one connection per host, reused for the whole run.

Interface used by observe/ and apply/ (keep stable):

    async with SshPool(options) as pool:
        conn = await pool.connect(entry)            # HostEntry from fleet.load
        res = await conn.run(["uname", "-m"])       # argv: each item quoted
        res = await conn.run("echo $HOME", timeout=5)  # str: a shell script (sh -c)
        res.exit_status, res.stdout, res.stderr
        sftp = await conn.sftp()                    # asyncssh.SFTPClient, cached
        local = await conn.forward_unix("/srv/mcp/mcp-agent.sock")  # local socket path for gRPC

Host keys are checked strictly: against `ssh.host_key` (pinned) or the file
`ssh.known_hosts`; nothing is trusted on first use unless `ssh.trust_on_first_use`
is set: then the key the first login saw is recorded (fleet/first_use.py) and checked strictly from
then on, as OpenSSH's `accept-new` (the key seen is also `conn.seen_host_key`).  Addresses are
tried in order; a key mismatch stops at once (`HostKeyMismatch`), other failures
move on to the next address and end as `Unreachable` listing every attempt.
Non-root users (or `ssh.sudo`) run commands through `ssh.become -n` (sudo or doas).  The key
exchange prefers curve25519-sha256: the post-quantum default of OpenSSH 9 costs
~0.13 s of client CPU per connection (measured on the lab).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from mcfleet.fleet.first_use import key_file, record_key, recorded_key, trusts_first_use
from mcfleet.fleet.load import HostEntry
from mcfleet.transport import relay
from mcfleet.transport.base import (
    OUTPUT_CAP,
    Command,
    CommandTimeout,
    HostKeyMismatch,
    LocalSshConfigError,
    RunResult,
    Unreachable,
    become_refused,
    grouped,
    output_too_large,
    shell_line,
    split_pgid,
)
from mcfleet.transport.ssh_login import FewerRoundTrips
from mcfleet.util.private_file import open_to_others, refusal

KEX_ALGS = ["curve25519-sha256", "curve25519-sha256@libssh.org", "ecdh-sha2-nistp256", "diffie-hellman-group14-sha256"]
# aes128-gcm first: with AES-NI it costs least CPU per packet, while asyncssh's chacha20-poly1305
# (OpenSSH's first choice, so the one negotiated by default) builds new cipher contexts for
# every packet; the server takes the client's first algorithm it also offers.
ENCRYPTION_ALGS = [
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
]
HOST_KEY_HINT = (
    "if the node was reinstalled, verify its new key out of band and update ssh.host_key in its host.json; "
    "otherwise treat this as a possible attack and do not connect"
)


@dataclass(frozen=True)
class SshOptions:
    """How mcfleet connects over SSH: timeouts, keepalives, keys and algorithms."""

    connect_timeout: float = 10.0
    command_timeout: float = 120.0
    keepalive_interval: float = 15.0
    keepalive_count_max: int = 3
    client_keys: tuple[str, ...] | None = None  # None: the host's identity_file, else ~/.ssh defaults + agent
    kex_algs: tuple[str, ...] = tuple(KEX_ALGS)
    encryption_algs: tuple[str, ...] = tuple(ENCRYPTION_ALGS)


FORWARD_PREFIX = "mcfleet-fwd-"  # + the pid of the process that made it: a folder for one forwarded socket


@functools.cache  # once per process: its first forward
def sweep_forward_dirs() -> None:
    """Remove the socket folders of mcfleet processes that are gone.  A process closes its own when its
    connections close; one killed first (SIGKILL, or exiting through os._exit on an error path) cannot,
    and each such folder would stay in the temp folder until the next reboot.  Only this user's folders
    named with a pid that no longer runs, holding nothing but the socket, are removed."""
    base = Path(tempfile.gettempdir())
    try:
        entries = [e for e in os.scandir(base) if e.name.startswith(FORWARD_PREFIX)]
    except OSError:
        return
    for entry in entries:
        pid = entry.name[len(FORWARD_PREFIX) :].split("-", 1)[0]
        with contextlib.suppress(OSError):
            if not pid.isdecimal() or entry.stat(follow_symlinks=False).st_uid != os.getuid() or _runs(int(pid)):
                continue
            if not entry.is_dir(follow_symlinks=False) or os.listdir(entry.path) not in ([], ["sock"]):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(entry.path, "sock"))
            os.rmdir(entry.path)


def _runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process has that pid
        return True
    return True


@dataclass
class SshConnection:
    """One live connection to one host; safe to use from many tasks at once."""

    name: str
    address: str
    conn: asyncssh.SSHClientConnection
    become: str | None  # 'sudo' / 'doas' for non-root users (or ssh.sudo), else None
    user: str  # the SSH login
    command_timeout: float
    seen_host_key: str | None = None
    _sftp: asyncssh.SFTPClient | None = None
    _forwards: list[Any] = field(default_factory=list)
    _relays: list[asyncssh.SSHClientProcess[bytes]] = field(default_factory=list)
    _forwarded: dict[str, tuple[str, asyncssh.SSHClientProcess[bytes] | None]] = field(default_factory=dict)
    _forward_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _tmpdirs: list[tempfile.TemporaryDirectory[str]] = field(default_factory=list)

    async def run(
        self,
        command: Command,
        *,
        input: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (a per-command limit is the API)
        max_output: int = OUTPUT_CAP,
        login: bool = False,
    ) -> RunResult:
        """Run `command` on the node: escalated (sudo/doas) unless `login`, which runs it as the SSH user.

        The command runs in its own process group; on timeout that whole group is killed
        on the node, so nothing it started keeps running there.
        """
        become = None if login else self.become
        line = shell_line(grouped(command), become=become)
        limit = timeout if timeout is not None else self.command_timeout
        collector = _Collector(max_output, f"the command `{_short(command)}`", self.name)
        try:
            status, out, err = await asyncio.wait_for(self._collect(line, input, collector), limit)
        except (asyncssh.TimeoutError, TimeoutError) as exc:
            killed = await self.kill_group(collector.pgid, become)
            raise CommandTimeout(
                f"command did not finish within {limit:g} s: {_short(command)}"
                + ("; it was killed on the node" if killed else "; it may still run on the node"),
                location=self.name,
                hint="raise the timeout or check the node's load",
            ) from exc
        except (asyncssh.Error, OSError) as exc:
            raise Unreachable(f"connection lost while running {_short(command)}: {exc}", location=self.name) from exc
        stderr = _text(err)
        if status != 0 and (refused := become_refused(become, self.user, stderr, self.name)) is not None:
            raise refused
        return RunResult(status, _text(out), stderr)

    async def _collect(self, line: str, input: str | None, collector: _Collector) -> tuple[int, bytes, bytes]:
        """Run `line`; `collector` gathers its stdout and stderr (each capped) until the channel closes."""
        chan, _session = await self.conn.create_session(lambda: collector, line, encoding=None)
        try:
            if input is not None:
                chan.write(input.encode())
            chan.write_eof()
            await chan.wait_closed()
        finally:
            chan.close()  # past the cap: closing the channel stops the node's output at once
        return collector.result()

    async def start(self, command: Command) -> asyncssh.SSHClientProcess[str]:
        """Start a long-running escalated command; it lives until its stdin closes or this connection ends."""
        line = shell_line(command, become=self.become)
        try:
            return await self.conn.create_process(line)
        except (asyncssh.Error, OSError) as exc:
            raise Unreachable(f"connection lost while starting {_short(command)}: {exc}", location=self.name) from exc

    async def kill_group(self, pgid: int | None, become: str | None) -> bool:
        """SIGKILL the process group `pgid` on the node (as the user that started it)."""
        if pgid is None or pgid <= 1:
            return False
        line = shell_line(["kill", "-KILL", "--", f"-{pgid}"], become=become)
        try:
            res = await asyncio.wait_for(self.conn.run(line, check=False), 15)
        except (asyncssh.Error, OSError, TimeoutError):
            return False
        return res.exit_status == 0

    async def sftp(self) -> asyncssh.SFTPClient:
        if self._sftp is None:
            self._sftp = await self.conn.start_sftp_client()
        return self._sftp

    async def forward_unix(self, remote_path: str) -> str:
        """A local unix socket that reaches the node's `remote_path`: made on the first call, the same for
        the connection's life after it (the reads, the apply and the health checks of a run share it).

        A relay on the node, run as root, reaches it for the run (transport.relay): a non-root login
        usually may not open the agent's socket (it is the agent account's), and the relay gets there
        with the login's sudo/doas rule.  A root login goes through the same relay rather than sshd's
        own forward: sshd, as root, would follow a link put at the path by the account owning its folder
        (mcp owns the agent's) to any socket root may open; the relay connects only to a socket that is
        at that very path.
        """
        async with self._forward_locks.setdefault(remote_path, asyncio.Lock()):
            made = self._forwarded.get(remote_path)
            if made is not None and (made[1] is None or not made[1].is_closing()):
                return made[0]  # a relay that ended is started again
            made = await self._forward(remote_path)
            self._forwarded[remote_path] = made
            return made[0]

    async def _forward(self, remote_path: str) -> tuple[str, asyncssh.SSHClientProcess[bytes] | None]:
        sweep_forward_dirs()
        tmp = tempfile.TemporaryDirectory(prefix=f"{FORWARD_PREFIX}{os.getpid()}-")
        self._tmpdirs.append(tmp)
        local = str(Path(tmp.name) / "sock")
        process: asyncssh.SSHClientProcess[bytes] | None = None
        if (shared := await relay.start_shared(self.conn, self.become, remote_path, self.name)) is not None:
            node_socket, process = shared
            self._relays.append(process)
            self._forwards.append(await self.conn.forward_local_path(local, node_socket))
        else:
            handler = relay.per_connection(self.conn, self.become, remote_path)
            self._forwards.append(await asyncio.start_unix_server(handler, local))
        return local, process

    async def close(self) -> None:
        for listener in self._forwards:
            listener.close()
        for process in self._relays:
            process.close()  # its stdin closes: the relay on the node removes its socket and exits
        if self._sftp is not None:
            self._sftp.exit()
        self.conn.close()
        with contextlib.suppress(Exception):
            await self.conn.wait_closed()
        for tmp in self._tmpdirs:
            tmp.cleanup()


class _Collector(asyncssh.SSHClientSession[bytes]):
    """A command's stdout and stderr gathered as the channel delivers them (no reader tasks), each
    at most `cap` bytes: past it the channel is closed.  The first stderr line the group wrapper
    prints (its process group id) is taken off as soon as it arrives, for a kill on timeout."""

    def __init__(self, cap: int, what: str, host: str) -> None:
        self.pgid: int | None = None
        self._chan: Any = None
        self._out = bytearray()
        self._err = bytearray()
        self._head_done = False
        self._error: BaseException | None = None
        self._status: int | None = None
        self._cap, self._what, self._host = cap, what, host

    def connection_made(self, chan: Any) -> None:
        self._chan = chan

    def data_received(self, data: bytes, datatype: int | None) -> None:
        if self._error is not None:
            return
        stderr = datatype == asyncssh.EXTENDED_DATA_STDERR
        if stderr:
            self._err += data
            if not self._head_done and b"\n" in data:  # the new chunk only: scanning the buffer again is quadratic
                self._take_head()
        else:
            self._out += data
        if len(self._err if stderr else self._out) > self._cap:
            what = f"{self._what} (stderr)" if stderr else self._what
            self._error = output_too_large(what, self._cap, self._host)
            self._chan.close()

    def _take_head(self) -> None:
        self._head_done = True
        head, _sep, rest = bytes(self._err).partition(b"\n")
        pgid, _ = split_pgid(head.decode("utf-8", "replace"))
        if pgid is not None:
            self.pgid = pgid
            self._err = bytearray(rest)

    def exit_status_received(self, status: int) -> None:
        self._status = status

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self._error is None:
            self._error = exc

    def result(self) -> tuple[int, bytes, bytes]:
        if self._error is not None:
            raise self._error
        if not self._head_done:
            self._take_head()
        return (self._status if self._status is not None else 255), bytes(self._out), bytes(self._err)


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def _short(command: Command) -> str:
    text = command if isinstance(command, str) else " ".join(command)
    first = text.strip().splitlines()[0] if text.strip() else text
    return first[:80] + ("…" if len(text) > 80 else "")


def _trust(entry: HostEntry) -> dict[str, Any]:
    """asyncssh keyword arguments that implement the host's host-key policy."""
    ssh = entry.host.ssh
    if ssh.host_key:
        return _only_key(
            ssh.host_key,
            "ssh.host_key is not a public key OpenSSH can read",
            f"hosts/{entry.host.name}/host.json#/ssh/host_key",
            "copy the key from the node's /etc/ssh/ssh_host_ed25519_key.pub ('ssh-ed25519 AAAA…'), "
            "verified out of band",
        )
    if ssh.known_hosts:
        path = Path(ssh.known_hosts).expanduser()
        try:
            return {"known_hosts": asyncssh.read_known_hosts(str(path))}
        except (OSError, ValueError) as exc:
            raise LocalSshConfigError(
                f"cannot read the known_hosts file {path}: {getattr(exc, 'strerror', None) or exc}",
                location=entry.host.name,
                hint="add the node's key to that file after verifying it out of band, or pin ssh.host_key in host.json",
            ) from exc
    # trust_on_first_use (the only way the model allows neither): the key the first login saw, once recorded
    line = _first_key(entry)
    if line is None:
        return {"known_hosts": None}  # the first connection: the key it sees is recorded once logged in
    return _only_key(
        line,
        f"{key_file(entry)} does not hold a public key OpenSSH can read",
        entry.host.name,
        "delete it (the next connection records the key the node shows), or pin ssh.host_key in host.json",
    )


def _only_key(line: str, bad: str, location: str, hint: str) -> dict[str, Any]:
    """asyncssh's arguments that accept this one host key (`line`: 'ssh-ed25519 AAAA…'), and ask the
    server for its type, else it may offer another key it holds; LocalSshConfigError (`bad`) for a line
    that is no key."""
    try:
        key = asyncssh.import_public_key(line)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise LocalSshConfigError(f"{bad} ({exc})", location=location, hint=hint) from exc
    return {"known_hosts": ([key], [], []), "server_host_key_algs": _host_key_algs(line)}


def _first_key(entry: HostEntry) -> str | None:
    """The key a trust-on-first-use host showed the first time (None: not recorded yet)."""
    try:
        return recorded_key(entry)
    except OSError as exc:
        raise LocalSshConfigError(
            f"cannot read {key_file(entry)}, the host key {entry.host.name} showed the first time: "
            f"{exc.strerror or exc}",
            location=entry.host.name,
            hint="make it readable, or pin ssh.host_key in host.json",
        ) from exc


AUTH_REFUSED = "authentication refused for user"
IDENTITY_HINT = "fix ssh.identity_file in host.json, or remove it to use ~/.ssh keys and the ssh agent"


def _client_keys(entry: HostEntry, opts: SshOptions) -> tuple[asyncssh.SSHKey, ...] | None:
    """The keys to offer, read here: a file that is not a private key is this machine's setup error,
    named with its path (asyncssh would raise its KeyImportError out of connect())."""
    paths = opts.client_keys
    if paths is None and entry.host.ssh.identity_file:
        paths = (os.path.expanduser(entry.host.ssh.identity_file),)
    if paths is None:
        return None
    return tuple(_private_key(path, entry.host.name) for path in paths)


def _private_key(path: str, host: str) -> asyncssh.SSHKey:
    try:
        st = os.stat(path)
        key = _read_key(path, st.st_mtime_ns, st.st_size)
    except OSError as exc:
        raise LocalSshConfigError(f"cannot read the identity file {path}", location=host, hint=IDENTITY_HINT) from exc
    except asyncssh.KeyImportError as exc:
        hint = (
            "load the key into ssh-agent (ssh-add) and remove ssh.identity_file: mcfleet never asks for a passphrase"
            if "assphrase" in str(exc)
            else "ssh.identity_file names the private key (not its .pub), in OpenSSH or PEM form"
        )
        raise LocalSshConfigError(
            f"the identity file {path} is not a private key mcfleet can use ({exc})", location=host, hint=hint
        ) from exc
    too_open = open_to_others(st)
    if too_open:  # as ssh itself refuses it ("UNPROTECTED PRIVATE KEY FILE")
        message, hint = refusal("SSH identity", path, too_open)
        raise LocalSshConfigError(message, location=host, hint=hint)
    return key


@functools.lru_cache(maxsize=16)
def _read_key(path: str, _mtime_ns: int, _size: int) -> asyncssh.SSHKey:
    """One parse per key file (as it is now) for the whole run, however many hosts use it."""
    return asyncssh.read_private_key(path)


async def _fingerprints(entry: HostEntry, address: str, kwargs: dict[str, Any]) -> str:
    """`: pinned SHA256:…, the node presented SHA256:…` — what a person compares out of band.

    The presented key is fetched again without authenticating (the key exchange alone shows it);
    if that fails too, the message goes without it.
    """
    ssh = entry.host.ssh
    first = _first_key(entry) if trusts_first_use(entry) else None
    line = ssh.host_key or first
    pinned = asyncssh.import_public_key(line).get_fingerprint() if line else None
    try:
        fetch = asyncssh.get_server_host_key(
            address,
            ssh.port,
            tunnel=kwargs.get("tunnel", ()),
            server_host_key_algs=kwargs.get("server_host_key_algs", ()),
        )
        key = await asyncio.wait_for(fetch, timeout=kwargs.get("connect_timeout") or 10.0)
    except (asyncssh.Error, OSError, TimeoutError):
        key = None
    seen = key.get_fingerprint() if key is not None else None
    said = "first seen" if first else "pinned"
    parts = ([f"{said} {pinned}"] if pinned else []) + ([f"the node presented {seen}"] if seen else [])
    return ": " + ", ".join(parts) if parts else ""


def _host_key_algs(host_key: str) -> list[str]:
    kind = host_key.split(maxsplit=1)[0]
    return ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] if kind == "ssh-rsa" else [kind]


class SshPool:
    """Connections by host name; each host is connected at most once per pool."""

    def __init__(self, options: SshOptions | None = None, hosts: Mapping[str, HostEntry] | None = None) -> None:
        self.options = options or SshOptions()
        self.hosts = hosts or {}  # the fleet: `ssh.jump` may name one of these hosts
        self._conns: dict[str, SshConnection] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._opening: set[str] = set()

    async def __aenter__(self) -> SshPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self, entry: HostEntry) -> SshConnection:
        name = entry.host.name
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            if name not in self._conns:
                self._conns[name] = await self._open(entry)
            return self._conns[name]

    async def _open(self, entry: HostEntry) -> SshConnection:
        host, opts = entry.host, self.options
        keys = _client_keys(entry, opts)
        kwargs: dict[str, Any] = {
            "port": host.ssh.port,
            "username": host.ssh.user,
            "connect_timeout": opts.connect_timeout,
            "keepalive_interval": opts.keepalive_interval,
            "keepalive_count_max": opts.keepalive_count_max,
            "kex_algs": list(opts.kex_algs),
            "encryption_algs": list(opts.encryption_algs),
            "client_factory": FewerRoundTrips,
            **_trust(entry),
        }
        if keys is not None:
            kwargs["client_keys"] = list(keys)
        if host.ssh.jump:
            kwargs["tunnel"] = await self._jump(entry)
        attempts: list[str] = []
        for address in host.addresses:
            try:
                conn = await _connect_retrying_drops(address, kwargs)
            except asyncssh.HostKeyNotVerifiable as exc:
                prints = await _fingerprints(entry, address, kwargs)
                first = trusts_first_use(entry)
                raise HostKeyMismatch(
                    f"{address}:{host.ssh.port} presented a host key that does not match "
                    f"{'the one it showed the first time' if first else 'the pinned one'} ({exc.reason}){prints}",
                    location=host.name,
                    hint=(
                        f"if the node was reinstalled, verify its new key out of band, then delete {key_file(entry)} "
                        "(or pin ssh.host_key in its host.json); otherwise treat this as a possible attack and do "
                        "not connect"
                    )
                    if first
                    else HOST_KEY_HINT,
                ) from exc
            except asyncssh.PermissionDenied as exc:
                attempts.append(f"{address}: {AUTH_REFUSED} {host.ssh.user} ({exc.reason})")
            except (asyncssh.Error, OSError, TimeoutError) as exc:
                attempts.append(f"{address}: {_describe(exc)}")
            else:
                _ack_at_once(conn)
                seen = conn.get_server_host_key()
                if seen is not None and kwargs["known_hosts"] is None and trusts_first_use(entry):
                    record_key(entry, seen.export_public_key().decode())  # checked against it from now on
                return SshConnection(
                    name=host.name,
                    address=address,
                    conn=conn,
                    become=host.ssh.become if host.ssh.sudo or host.ssh.user != "root" else None,
                    user=host.ssh.user,
                    command_timeout=opts.command_timeout,
                    seen_host_key=seen.export_public_key().decode().strip() if seen is not None else None,
                )
        hint = (
            f"check that the node is up and sshd listens on port {host.ssh.port}; addresses are tried "
            "in the order of `addresses` in host.json"
        )
        if attempts and all(AUTH_REFUSED in a for a in attempts):  # the node answered: it is the key or the user
            key = f"the public key of {host.ssh.identity_file}" if host.ssh.identity_file else "your key"
            hint = f"check ssh.user ({host.ssh.user}), and that {key} is in its ~/.ssh/authorized_keys on the node"
        if any(DROPPED_EVERY_TRY in a for a in attempts):
            hint += f"; {DROPPED_HINT}"
        raise Unreachable("no address answered: " + "; ".join(attempts), location=host.name, hint=hint)

    async def _jump(self, entry: HostEntry) -> Any:
        """The tunnel to reach `entry` through.

        A jump that names a fleet host is that host's own pooled connection, with its pinned key
        checked like any other; anything else (`user@host[:port]`) is handed to asyncssh, which
        checks that host against the operator's known_hosts (never trust-on-first-use).
        """
        jump = entry.host.ssh.jump
        via = self.hosts.get(jump) if jump else None
        if via is None:
            return jump
        if via.host.name in self._opening or via.host.name == entry.host.name:
            raise Unreachable(
                f"ssh.jump of {entry.host.name} leads back to {via.host.name}: the jumps form a loop",
                location=f"hosts/{entry.host.name}/host.json#/ssh/jump",
                hint="make the jump chain end at a host reached directly",
            )
        self._opening.add(entry.host.name)
        try:
            return (await self.connect(via)).conn
        finally:
            self._opening.discard(entry.host.name)

    async def close(self) -> None:
        conns, self._conns = list(self._conns.values()), {}
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)


# sshd closes a connection before login completes, with no message the client can read, when it
# is restarting, when it already holds MaxStartups unauthenticated connections (OpenSSH's default
# 10:30:100 drops new ones at random past 10), and while a node boots: until
# systemd-user-sessions.service has run, /run/nologin makes PAM refuse every login but root's
# ("Access denied ... by PAM account configuration" in the node's log).  Three more tries, after
# 0.5, 1.5 and 3 s (like OpenSSH's ConnectionAttempts), outlast those moments and tell them from a
# node that is down.  A refused or timed-out connection is not tried again.
DROPPED_RETRY_PAUSES_S = (0.5, 1.5, 3.0)
DROPPED_EVERY_TRY = "sshd closed the connection before login completed"
DROPPED_HINT = (
    "an sshd that closes every connection before login is restarting, past its MaxStartups, or "
    "refusing logins other than root's while /run/nologin exists (a booting node, or one whose "
    "systemd-user-sessions.service failed: see its journal)"
)


def _ack_at_once(conn: asyncssh.SSHClientConnection) -> None:
    """Have the kernel acknowledge what the node sends at once (TCP_QUICKACK, set again on every read).

    sshd leaves Nagle's algorithm on for sessions without a terminal, so a small packet it sends right
    after another (the EOF and close of a forwarded socket after its answer) waits until this side has
    acknowledged the first, which Linux delays by up to 40 ms: every read of HAProxy or Caddy through
    the connection ended 40 ms after its last byte.  Linux leaves quick-ack mode by itself, hence the
    option on every read; elsewhere (no TCP_QUICKACK, or a connection through a jump host) nothing
    changes."""
    quickack = getattr(socket, "TCP_QUICKACK", None)
    sock = conn.get_extra_info("socket")
    if quickack is None or sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    received = conn.data_received

    def data_received(data: bytes, datatype: int | None = None) -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)
        received(data, datatype)

    # asyncio's transport looks the method up on the protocol (the connection) for every read
    conn.data_received = data_received  # type: ignore[method-assign]


async def _connect_retrying_drops(address: str, kwargs: dict[str, Any]) -> asyncssh.SSHClientConnection:
    for pause in DROPPED_RETRY_PAUSES_S:
        try:
            return await asyncssh.connect(address, **kwargs)
        except (asyncssh.ConnectionLost, ConnectionResetError, BrokenPipeError):
            await asyncio.sleep(pause)
    try:
        return await asyncssh.connect(address, **kwargs)
    except (asyncssh.ConnectionLost, ConnectionResetError, BrokenPipeError) as exc:
        tries = len(DROPPED_RETRY_PAUSES_S) + 1
        raise _DroppedEveryTry(f"{_describe(exc)} ({tries} times: {DROPPED_EVERY_TRY})") from exc


class _DroppedEveryTry(OSError):
    """Every try was dropped by the node's sshd."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _DroppedEveryTry):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
    return str(reason) or type(exc).__name__
