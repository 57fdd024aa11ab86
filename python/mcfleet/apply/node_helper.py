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
- reads, chmods or chowns an existing file only if it has one name: a second hard link
  may be another file's (`/etc/shadow` linked into mcp's folder where the kernel allows
  it, fs.protected_hardlinks=0), which root would otherwise copy out or hand over;
- names the cause of a failure: "no space left on <mount> (N bytes free, M needed)",
  "permission denied: <path> (as uid N)".

Commands (stdout is `key=value` lines; errors go to stderr as `mcfleet-node: …`, exit 2):

    put DEST MODE OWNER [--sha SHA] [--from SRC] [--record FILE]   (OWNER as for secure; FILE: see put())
    mkdir PATH MODE OWNER…   folders (triples), created when absent, mode and owner set (OWNER as
                          for secure); a link in their place or on the way is refused
    hash PATH…            sha256 of each regular file, `-` if absent, `!<kind>` if not regular or with more
                          than one name (hard links: never read)
    rm PATH…              unlink (never following a link), missing is fine
    secure PATH MODE OWNER   a regular file's mode and owner (OWNER: uid[:gid] or user[:group]);
                          a link or a missing file is left alone (`secured=no`); a file with a
                          second name (a hard link) is refused
    pair KEY CERT OWNER   stdin: a private key, the line `--mcfleet-chain-follows--`, a chain: KEY
                          (0600) then CERT (0644), each put as above, OWNER as for secure

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
from collections.abc import Iterable, Iterator

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
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NodeError(f"{path} is not a regular file")
    if st.st_nlink > 1:
        os.close(fd)
        raise NodeError(_many_names(path, st.st_nlink))
    return fd


def _many_names(path: str, names: int) -> str:
    return (
        f"{path} has {names} names (hard links): refusing to read or change it, the other name may be "
        f"another account's file; remove the extra links (find / -xdev -samefile {path}) and re-run"
    )


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
    if st.st_nlink > 1:  # not read (open_regular): another name may be another account's file
        return "!links"
    fd = open_regular(path)
    try:
        digest = hashlib.sha256()
        while chunk := os.read(fd, CHUNK):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(fd)


def _chunks(source_fd: int) -> Iterator[bytes]:
    while chunk := os.read(source_fd, CHUNK):
        yield chunk


class _Staged:
    """A temp file beside `dest`, created exclusively (O_EXCL|O_NOFOLLOW) and written through its own
    descriptor, owner and mode set: `install()` renames it into place; `discard()` removes it."""

    def __init__(self, dfd: int, dest: str, mode: int, owner: tuple[int, int], chunks: Iterable[bytes], *,
                 want_sha: str | None = None) -> None:  # fmt: skip
        self.dfd, self.dest = dfd, dest
        self.parent, self.name = _split(dest)
        self.tmp = f".{self.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dfd)
        except OSError as exc:
            raise NodeError(_describe(exc, f"{self.parent}/{self.tmp}")) from None
        digest, written = hashlib.sha256(), 0
        try:
            for chunk in chunks:
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    n = os.write(fd, view)
                    view, written = view[n:], written + n
            self.sha256 = digest.hexdigest()
            if want_sha and self.sha256 != want_sha:
                raise NodeError(
                    f"hash mismatch for {dest}: got {self.sha256}, want {want_sha} (the upload was changed)"
                )
            os.fchown(fd, *owner)
            os.fchmod(fd, mode)
            os.fsync(fd)
            self.mine = os.fstat(fd)
        except OSError as exc:
            self.discard()
            raise NodeError(_describe(exc, dest, need=written + CHUNK)) from None
        except BaseException:
            self.discard()
            raise
        finally:
            os.close(fd)

    def install(self) -> None:
        try:
            os.rename(self.tmp, self.name, src_dir_fd=self.dfd, dst_dir_fd=self.dfd)
            now = os.stat(self.name, dir_fd=self.dfd, follow_symlinks=False)
        except OSError as exc:
            self.discard()
            raise NodeError(_describe(exc, self.dest)) from None
        if (now.st_dev, now.st_ino) != (self.mine.st_dev, self.mine.st_ino):
            raise NodeError(f"{self.dest} was replaced while it was installed: someone else writes in {self.parent}")
        self.installed = now

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.tmp, dir_fd=self.dfd)


def put(
    dest: str,
    mode: int,
    owner: tuple[int, int],
    *,
    source_fd: int | None = None,
    data: bytes | None = None,
    want_sha: str | None = None,
    record: str | None = None,
) -> str:
    """Write everything from `source_fd` (or `data`) to `dest` atomically; return its sha256.

    The temp file is created exclusively in dest's folder and written through its own
    descriptor; on any failure it is removed, so nothing is left behind.  With `record` (a
    file in root's store), also `stat_key(dest) sha256` there: the facts read reuses that
    hash while the file's stat key is the same, instead of hashing it again.
    """
    parent, _name = _split(dest)
    dfd = open_dir(parent, create_mode=0o700)
    try:
        chunks = [data] if data is not None else _chunks(source_fd if source_fd is not None else -1)
        staged = _Staged(dfd, dest, mode, owner, chunks, want_sha=want_sha)
        staged.install()
        os.fsync(dfd)
    finally:
        os.close(dfd)
    if record:
        put(record, 0o600, (0, 0), data=f"{stat_key(staged.installed)} {staged.sha256}\n".encode())
    return staged.sha256


def stat_key(st: os.stat_result) -> str:
    """The file's device, inode, size, mtime and ctime (ns), as `stat -c '%d %i %s %.9Y %.9Z'` prints
    them.  Any write, rename or chmod moves the ctime, which no caller can set back: a file
    whose key is unchanged holds the bytes it held when the key was taken."""

    def ns(t: int) -> str:
        return f"{t // 1_000_000_000}.{t % 1_000_000_000:09d}"

    return f"{st.st_dev} {st.st_ino} {st.st_size} {ns(st.st_mtime_ns)} {ns(st.st_ctime_ns)}"


def make_dir(path: str, mode: int, owner: tuple[int, int]) -> None:
    """Folder `path` (no link followed), created when absent, owner and mode set through its descriptor; a
    missing parent is made root's 0755 (as `install -d` makes it)."""
    parent, name = _split(path)
    dfd = open_dir(parent, create_mode=0o755)
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
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return False
        if st.st_nlink > 1:
            raise NodeError(_many_names(path, st.st_nlink))
        os.fchmod(fd, mode)
        os.fchown(fd, *owner)
        return True
    finally:
        os.close(fd)


SEPARATOR = b"\n--mcfleet-chain-follows--\n"


def pair(key: str, cert: str, owner: tuple[int, int], payload: bytes) -> None:
    """A private key (0600) and its certificate chain (0644) beside it, from one payload.  Both are written
    in full before either is renamed into place, the key first: a failed write (a full disk) leaves the
    old pair as it was, never a new key beside the old chain."""
    key_pem, sep, chain = payload.partition(SEPARATOR)
    if not sep or not key_pem.strip() or not chain.strip():
        raise NodeError("pair: stdin must be a key, the separator line, then a chain (none may be empty)")
    if _split(key)[0] != _split(cert)[0]:
        raise NodeError(f"pair: {key} and {cert} must be in one folder")
    dfd = open_dir(_split(cert)[0], create_mode=0o700)
    staged: list[_Staged] = []
    try:
        staged.append(_Staged(dfd, key, 0o600, owner, [key_pem + b"\n"]))
        staged.append(_Staged(dfd, cert, 0o644, owner, [chain]))
        for one in staged:
            one.install()
        os.fsync(dfd)
    except BaseException:
        for one in staged:
            one.discard()
        raise
    finally:
        os.close(dfd)


def main(argv: list[str]) -> int:
    try:
        cmd, args = argv[0], argv[1:]
        if cmd == "hash":
            for path in args:
                print(f"{path}={hash_path(path)}")
        elif cmd == "put":
            dest, mode, owner = args[0], int(args[1], 8), _account(args[2])
            opts = dict(zip(args[3::2], args[4::2], strict=True))
            src = opts.get("--from")
            fd = open_regular(src) if src else sys.stdin.fileno()
            try:
                sha = put(dest, mode, owner, source_fd=fd, want_sha=opts.get("--sha"), record=opts.get("--record"))
                print(f"sha256={sha}")
            finally:
                if src:
                    os.close(fd)
        elif cmd == "rm":
            for path in args:
                remove(path)
        elif cmd == "mkdir":
            if not args or len(args) % 3:
                raise NodeError("mkdir takes PATH MODE OWNER triples")
            for folder, octal, account in zip(args[::3], args[1::3], args[2::3], strict=True):
                make_dir(folder, int(octal, 8), _account(account))
        elif cmd == "pair":
            pair(args[0], args[1], _account(args[2]), sys.stdin.buffer.read())
            print("installed=yes")
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
