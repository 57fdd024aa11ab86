"""Reaching a unix socket on a node as root, without following a link put at its path.

The agent's socket lies in the agent account's folder (/srv/mcp): that account can put a link
there to any socket, and whatever connects as root would follow it.  sshd forwards a unix socket
as the login user: a non-root login usually may not open the socket at all, and a root login's sshd
would follow the link.  So one relay per forwarded socket runs as root on the node (through sudo/doas
for a non-root login) for the whole run: it listens on a socket of its own in a fresh folder of the
login user (mode 0700: no other account can reach it) and pipes each connection made there to the
target, which it connects to only when a socket is at that very path.  sshd then forwards each
connection to the relay's socket natively: one channel, no process.  Cost: one Python start-up
(~30 ms of CPU on the node) per socket and run.

Where sshd does not forward unix sockets (`AllowStreamLocalForwarding no`), each connection
starts its own copy process as root instead (`PER_CONNECTION`): the same bytes, one sudo and
one Python start-up (~30 ms on the node) per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from typing import Any

import asyncssh

from mcfleet.transport.base import MISSING_PROGRAM, CommandFailed, RunResult, shell_line

# How both relays reach the target as root: its folder may be the agent account's (/srv/mcp), and so may a
# folder on the way to it (a socket configured deeper, /srv/mcp/run/agent.sock).  The path is walked one name
# at a time from / through O_PATH descriptors opened with O_NOFOLLOW: a link is followed only where it lies
# in a folder that only root can write (root put it there: /var/run -> /run), never in another account's
# folder and never as the last name.  Such a link's target is walked the same way, a name at a time (a
# target through the agent account's folder meets the same rule there); only a socket is connected to,
# through the descriptor of the file itself.
REACH = """
import os, socket, stat
def reach(path):
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY)
    try:
        names = [n for n in path.split("/") if n]
        links = 0
        while names:
            name = names.pop(0)
            nxt = os.open(name, os.O_PATH | os.O_NOFOLLOW, dir_fd=fd)
            if stat.S_ISLNK(os.fstat(nxt).st_mode):
                os.close(nxt)
                here = os.fstat(fd)
                if not names or here.st_uid != 0 or here.st_mode & 0o022 or links == 40:
                    raise OSError(path + ": not a socket (a link is not followed)")
                links += 1
                target = os.readlink(name, dir_fd=fd)  # root's folder: nobody else can change it meanwhile
                names[:0] = [n for n in target.split("/") if n]
                if target.startswith("/"):
                    nxt = os.open("/", os.O_PATH | os.O_DIRECTORY)
                else:
                    continue  # its names are walked from this folder
            os.close(fd)
            fd = nxt
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise OSError(path + ": not a socket (a link is not followed)")
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect("/proc/self/fd/%d" % fd)
        except OSError:
            s.close()
            raise
        return s
    finally:
        os.close(fd)
"""

# Copies stdin to the unix socket argv[1] and the socket to stdout (run escalated on the node).
PER_CONNECTION = (
    REACH
    + """
import os, socket, sys, threading
s = reach(sys.argv[1])
def up():
    while data := os.read(0, 65536):
        s.sendall(data)
    s.shutdown(socket.SHUT_WR)
threading.Thread(target=up, daemon=True).start()
while data := s.recv(65536):
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
"""
)

# Listens on argv[2] (in a folder only the login user can enter: umask 0 makes the socket itself
# connectable by that user, the folder keeps everyone else out) and pipes each connection to the
# socket argv[1]; prints `ready` once listening; at EOF on stdin (the SSH channel closed: the run
# ended or its connection dropped) removes its socket and folder and exits.  It holds a flock on its
# folder while it lives: the lock goes with the process however it ends (a SIGKILL, a reboot), so a
# folder nobody holds is one whose relay died before it could clean up (swept by FOLDER).
SHARED = (
    REACH
    + """
import fcntl, os, socket, sys, threading
target, path = sys.argv[1], sys.argv[2]
held = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.umask(0)
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen(64)
def pipe(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass
def serve(client):
    try:
        node = reach(target)
    except OSError:
        client.close()
        return
    down = threading.Thread(target=pipe, args=(node, client), daemon=True)
    down.start()
    pipe(client, node)
    down.join()
    client.close()
    node.close()
def accept():
    while True:
        client, _ = server.accept()
        threading.Thread(target=serve, args=(client,), daemon=True).start()
threading.Thread(target=accept, daemon=True).start()
sys.stdout.write("ready\\n")
sys.stdout.flush()
while os.read(0, 65536):
    pass
os.unlink(path)
os.rmdir(os.path.dirname(path))
os._exit(0)
"""
)

READY = b"ready\n"
# How root runs either relay: isolated (-I: no PYTHON* variables, no user site, and not the working folder,
# which is the login's home, on the import path) and without site (-S: the relays use the standard library
# only; ~2.5 ms less of start-up per relay).
PYTHON = ["python3", "-I", "-S", "-c"]
START_TIMEOUT = 15.0  # sudo, the Python start-up and the bind on a loaded node
# The login user's shell first removes the folders of relays that died without cleaning up: its own,
# older than a minute (a relay takes its lock within START_TIMEOUT of the folder being made) and not
# locked (`flock -n` gets the lock only when no relay holds it; where flock is missing nothing is
# removed).  It then makes the relay's folder (private, unique per relay), says where, and becomes the
# escalated relay: one channel and no extra round trip.
SWEEP = (
    'find "${HOME:-/tmp}" -maxdepth 1 -name ".mcfleet-fwd.*" -type d -user "$(id -u)" -mmin +1'
    " -exec flock -n {} rm -rf {} ';' 2>/dev/null; "
)
FOLDER = SWEEP + 'd=$(umask 077 && mktemp -d "${HOME:-/tmp}/.mcfleet-fwd.XXXXXXXX") || exit 1; echo "$d"; exec '


async def start_shared(
    conn: asyncssh.SSHClientConnection, become: str | None, remote_path: str, host: str
) -> tuple[str, asyncssh.SSHClientProcess[bytes]] | None:
    """Start the shared relay to `remote_path`: (the node-side socket to forward to, its process), or None
    when it cannot serve (the folder or the relay did not start, or sshd does not forward unix sockets):
    the caller then relays per connection.  CommandFailed when the node has no python3 (or sudo/doas
    cannot find it): a relay per connection could not start either, and the connections would only close."""
    script = FOLDER + shell_line([*PYTHON, SHARED, remote_path], become=become) + ' "$d/sock"'
    line = shlex.join(["sh", "-c", script])  # whatever the login shell is
    try:
        proc = await conn.create_process(line, encoding=None)
    except (asyncssh.Error, OSError):
        return None
    folder = ""
    try:
        said = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)
        folder = said.decode(errors="replace").strip()
        if not folder.startswith("/"):
            raise OSError("no folder for the relay")
        if await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT) != READY:
            raise OSError("the relay did not start")
        path = f"{folder}/sock"
        _reader, writer = await conn.open_unix_connection(path)  # sshd may refuse to forward unix sockets
        writer.close()
    except asyncio.CancelledError:  # a read no longer wanted (observe.collect): its relay ends at this EOF
        proc.close()
        raise
    except (asyncssh.Error, OSError, TimeoutError):
        said_err = await _stderr_of_ended(proc)
        proc.close()  # a relay that did start removes its folder at this EOF; one that did not leaves it:
        if folder.startswith("/"):
            with contextlib.suppress(asyncssh.Error, OSError, TimeoutError):
                await asyncio.wait_for(conn.run(f"rmdir {shlex.quote(folder)} 2>/dev/null", check=False), START_TIMEOUT)
        ended = RunResult(proc.exit_status if proc.exit_status is not None else -1, "", said_err)
        if ended.program_missing:
            raise CommandFailed(
                f"starting the relay to {remote_path} {f'through {become}' if become else 'as root'}: "
                f"{said_err.strip()[-300:]}",
                location=host,
                hint=MISSING_PROGRAM,
            ) from None
        return None
    return path, proc


async def _stderr_of_ended(proc: asyncssh.SSHClientProcess[bytes]) -> str:
    """What a relay that stopped before `ready` said on stderr (sudo's or the shell's complaint); "" for one
    still running (sshd refusing the forward: it is closed by the caller, not waited for)."""
    if not proc.stdout.at_eof():
        return ""
    try:
        await asyncio.wait_for(proc.wait_closed(), 2)
        return (await asyncio.wait_for(proc.stderr.read(), 2)).decode(errors="replace")
    except (asyncssh.Error, OSError, TimeoutError):
        return ""


def per_connection(conn: asyncssh.SSHClientConnection, become: str | None, remote_path: str) -> Any:
    """A local server's handler that relays each connection through its own escalated copy process."""
    line = shell_line([*PYTHON, PER_CONNECTION, remote_path], become=become)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            proc = await conn.create_process(line, encoding=None)
        except (asyncssh.Error, OSError):
            writer.close()
            return

        async def up() -> None:
            while data := await reader.read(65536):
                proc.stdin.write(data)
            proc.stdin.write_eof()

        async def down() -> None:
            while data := await proc.stdout.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        with contextlib.suppress(Exception):
            await asyncio.gather(up(), down())
        proc.close()
        writer.close()

    return handle
