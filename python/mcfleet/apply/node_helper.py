"""The root-side file operations on a node, run there as `python3 -c <this file> <command> …`.

Root must never trust what the agent's account (`mcp`) can write: `/srv/mcp` is mcp's,
so a root step that writes there could be made to follow a planted symlink, or to
read a file mcp swapped in.  Every root file operation of an apply goes through this
program, which:

- walks every path from `/` one component at a time with O_NOFOLLOW (a symlinked
  folder anywhere on the way is refused, not followed);
- creates its temp file with O_CREAT|O_EXCL|O_NOFOLLOW in the target folder and
  writes through that descriptor (never reopened by name), then renames it into
  place relative to the folder's descriptor (rename replaces a link, never follows it);
- reads a source only if it is a regular file (O_NOFOLLOW, fstat), hashing the bytes
  it copies, so the hash it checks is the hash of what it wrote;
- names the cause of a failure: "no space left on <mount> (N bytes free, M needed)",
  "permission denied: <path> (as uid N)".

Commands (stdout is `key=value` lines; errors go to stderr as `mcfleet-node: …`, exit 2):

    put DEST MODE UID:GID [--sha SHA] [--from SRC]
    hash PATH…            sha256 of each regular file, `-` if absent, `!<kind>` if not regular
    rm PATH…              unlink (never following a link), missing is fine
    secure PATH MODE OWNER   a regular file's mode and owner (OWNER: uid[:gid] or user[:group]);
                          a link or a missing file is left alone (`secured=no`)

Standard library only, Python 3.10+: it runs under the node's own python3.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
import sys

CHUNK = 1 << 20
EXIT_ERROR = 2


class NodeError(Exception):
    pass


def _describe(exc: OSError, path: str, need: int = 0) -> str:
    if exc.errno == errno.ENOSPC:
        return f"no space left on {_mount_of(path)} ({_free(path)} bytes free, {need} needed) writing {path}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied: {path} (as uid {os.geteuid()})"
    if exc.errno == errno.ELOOP:
        return f"refusing to follow a symbolic link at {path}"
    if exc.errno == errno.EEXIST:
        return f"{path} appeared while writing it (someone else writes in that folder)"
    return f"{path}: {exc.strerror or exc}"


def _mount_of(path: str) -> str:
    probe = os.path.dirname(path) or "/"
    while probe != "/" and not os.path.ismount(probe):
        probe = os.path.dirname(probe)
    return probe


def _free(path: str) -> int:
    try:
        st = os.statvfs(os.path.dirname(path) or "/")
    except OSError:
        return -1
    return st.f_bavail * st.f_frsize


def open_dir(path: str, *, create_mode: int | None = None) -> int:
    """A descriptor of folder `path`, reached from `/` without following any link.

    Missing folders are created (root-owned, `create_mode`) when `create_mode` is given.
    """
    if not path.startswith("/"):
        raise NodeError(f"not an absolute path: {path}")
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    walked = ""
    try:
        for part in [p for p in path.split("/") if p]:
            if part in (".", ".."):
                raise NodeError(f"path {path} is not normalised")
            walked += "/" + part
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if create_mode is None:
                    raise NodeError(f"folder {walked} does not exist") from None
                os.mkdir(part, create_mode, dir_fd=fd)
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.fchmod(nxt, create_mode)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise NodeError(f"{walked} is not a folder (a link or a file): refusing to follow it") from None
                raise NodeError(_describe(exc, walked)) from None
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _split(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition("/")
    if not name or name in (".", ".."):
        raise NodeError(f"not a file path: {path}")
    return parent or "/", name


def open_regular(path: str) -> int:
    """A read descriptor of regular file `path` (no link followed anywhere on the way)."""
    parent, name = _split(path)
    dfd = open_dir(parent)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
    except OSError as exc:
        raise NodeError(_describe(exc, path)) from None
    finally:
        os.close(dfd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NodeError(f"{path} is not a regular file")
    return fd


def hash_path(path: str) -> str:
    """sha256 of a regular file, `-` when absent, `!link`/`!other` when it is not a regular file."""
    parent, name = _split(path)
    try:
        dfd = open_dir(parent)
    except NodeError:
        return "-"
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return "-"
    finally:
        os.close(dfd)
    if stat.S_ISLNK(st.st_mode):
        return "!link"
    if not stat.S_ISREG(st.st_mode):
        return "!other"
    fd = open_regular(path)
    try:
        digest = hashlib.sha256()
        while chunk := os.read(fd, CHUNK):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(fd)


def _owner(spec: str) -> tuple[int, int]:
    uid, _, gid = spec.partition(":")
    if not (uid.isdecimal() and gid.isdecimal()):
        raise NodeError(f"owner must be numeric uid:gid, not {spec!r}")
    return int(uid), int(gid)


def put(dest: str, mode: int, owner: tuple[int, int], *, source_fd: int, want_sha: str | None) -> str:
    """Write everything from `source_fd` to `dest` atomically; return its sha256.

    The temp file is created exclusively in dest's folder and written through its own
    descriptor; on any failure it is removed, so nothing is left behind.
    """
    parent, name = _split(dest)
    dfd = open_dir(parent, create_mode=0o700)
    tmp = f".{name}.{secrets.token_hex(6)}.tmp"
    try:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dfd)
        except OSError as exc:
            raise NodeError(_describe(exc, f"{parent}/{tmp}")) from None
        digest, written = hashlib.sha256(), 0
        try:
            while chunk := os.read(source_fd, CHUNK):
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    n = os.write(fd, view)
                    view, written = view[n:], written + n
            got = digest.hexdigest()
            if want_sha and got != want_sha:
                raise NodeError(f"hash mismatch for {dest}: got {got}, want {want_sha} (the upload was changed)")
            os.fchown(fd, *owner)
            os.fchmod(fd, mode)
            os.fsync(fd)
            mine = os.fstat(fd)
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            now = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
                raise NodeError(f"{dest} was replaced while it was installed: someone else writes in {parent}")
            os.fsync(dfd)
        except OSError as exc:
            raise NodeError(_describe(exc, dest, need=written + CHUNK)) from None
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dfd)
        raise
    finally:
        os.close(dfd)
    return got


def make_dir(path: str, mode: int, owner: tuple[int, int]) -> None:
    """Folder `path` (its parent must exist; no link followed), created when absent; owner and mode set."""
    parent, name = _split(path)
    dfd = open_dir(parent)
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=dfd)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dfd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise NodeError(f"{path} is not a folder (a link or a file): refusing to follow it") from None
            raise NodeError(_describe(exc, path)) from None
        try:
            os.fchown(fd, *owner)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
    finally:
        os.close(dfd)


def remove(path: str) -> None:
    parent, name = _split(path)
    try:
        dfd = open_dir(parent)
    except NodeError:
        return
    try:
        os.unlink(name, dir_fd=dfd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise NodeError(_describe(exc, path)) from None
    finally:
        os.close(dfd)


def _account(spec: str) -> tuple[int, int]:
    """uid and gid (-1: left as it is) of `uid[:gid]` or `user[:group]`, as chown(1) reads them."""
    import grp
    import pwd

    user, _, group = spec.partition(":")
    try:
        uid = int(user) if user.isdecimal() else pwd.getpwnam(user).pw_uid
        gid = (int(group) if group.isdecimal() else grp.getgrnam(group).gr_gid) if group else -1
    except KeyError:
        raise NodeError(f"no such account {spec!r} on this node") from None
    return uid, gid


def secure(path: str, mode: int, owner: tuple[int, int]) -> bool:
    """Set a regular file's mode and owner through its descriptor (no link followed, on the way or at the
    end: a link swapped in is never the one changed); False when it is absent, a link or not a file."""
    parent, name = _split(path)
    dfd = open_dir(parent)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP):
            return False
        raise NodeError(_describe(exc, path)) from None
    finally:
        os.close(dfd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        os.fchmod(fd, mode)
        os.fchown(fd, *owner)
        return True
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    try:
        cmd, args = argv[0], argv[1:]
        if cmd == "hash":
            for path in args:
                print(f"{path}={hash_path(path)}")
        elif cmd == "put":
            dest, mode, owner = args[0], int(args[1], 8), _owner(args[2])
            opts = dict(zip(args[3::2], args[4::2], strict=True))
            src = opts.get("--from")
            fd = open_regular(src) if src else sys.stdin.fileno()
            try:
                print(f"sha256={put(dest, mode, owner, source_fd=fd, want_sha=opts.get('--sha'))}")
            finally:
                if src:
                    os.close(fd)
        elif cmd == "rm":
            for path in args:
                remove(path)
        elif cmd == "mkdir":
            make_dir(args[0], int(args[1], 8), _owner(args[2]))
        elif cmd == "secure":
            print(f"secured={'yes' if secure(args[0], int(args[1], 8), _account(args[2])) else 'no'}")
        else:
            raise NodeError(f"unknown command {cmd!r}")
    except NodeError as exc:
        print(f"mcfleet-node: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (IndexError, ValueError) as exc:
        print(f"mcfleet-node: bad arguments {argv!r}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
