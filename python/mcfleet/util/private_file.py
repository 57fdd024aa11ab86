"""A file holding a secret on the operator's machine that other users can get at is refused, as OpenSSH refuses
such a private key: whoever can read it holds the credential, and whoever can write it chooses it.

`read_credential` reads one as OpenSSH's StrictModes does: not through a link at its name, only a regular
file owned by this user or root, and only when every folder on the way to it is owned by root or this user
and writable by no one else (a sticky folder such as /tmp excepted).  Otherwise another account that can
write one of those folders (mcfleet run as root, a token file under a service account's home) could put a
link there to any file root can read, and mcfleet would send that file's content as the credential."""

from __future__ import annotations

import errno
import os
import pwd
import stat
from pathlib import Path

MAX_CREDENTIAL_BYTES = 1 << 20  # 1 MiB: far above any key or token; a bigger file is not one
MAX_LINKS = 40  # as the kernel's limit on links followed in one path (ELOOP)


def open_to_others(st: os.stat_result) -> str | None:
    """'mode 0644' when the file is this user's and its mode gives group or others any access; None otherwise.
    A file another user owns (a key shared through a group) is that user's to guard, as with OpenSSH
    (`read_credential` refuses one outright: that user can replace it)."""
    if st.st_uid != os.geteuid() or not st.st_mode & 0o077:
        return None
    return f"mode {stat.S_IMODE(st.st_mode):04o}"


def refusal(what: str, path: str, mode: str) -> tuple[str, str]:
    """(message, hint) for a credential file `open_to_others` found open: one wording for every kind."""
    return (
        f"the {what} file {path} is open to other users ({mode}): mcfleet does not use a credential others can "
        "read or replace",
        f"chmod 600 {path} (and replace the {what} if others may have read it)",
    )


class CredentialRefused(Exception):
    """A credential file `read_credential` will not read: `message` names the file and what is wrong with it
    (never its content), `hint` what to do."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def _user(uid: int) -> str:
    """'uid 850 (mcp)', or 'uid 850' for a uid with no account here."""
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def _login() -> str:
    """This user's name, for a command to run (its uid when it has no account here)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _trusted(uid: int) -> bool:
    return uid in (0, os.geteuid())


def _folder_problem(folder: str, st: os.stat_result) -> str | None:
    """Why another user could replace what `folder` holds, or None."""
    if not _trusted(st.st_uid):
        return f"folder {folder} is owned by {_user(st.st_uid)}"
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        who = "its group and others" if st.st_mode & 0o022 == 0o022 else "others" if st.st_mode & 0o002 else "its group"
        return f"folder {folder} is writable by {who} (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _check_folders(path: str) -> str | None:
    """Why another user could replace the file at `path` by changing a folder on the way to it (or a link
    in one), or None.  The way is walked from / as the kernel resolves it, links followed: each folder
    passed through must be root's or this user's and writable by no one else unless sticky; a link
    passed through must be root's or this user's (in a sticky folder its owner may replace it)."""
    # not os.path.abspath: it drops `x/..` by the name alone, where the kernel goes up from where link x leads
    todo = [p for p in os.path.dirname(os.path.join(os.getcwd(), path)).split("/") if p]
    cur, links = "/", 0
    problem = _folder_problem(cur, os.stat(cur))
    while todo and problem is None:
        name = todo.pop(0)
        if name == ".":
            continue
        if name == "..":
            cur = os.path.dirname(cur)
            continue
        nxt = os.path.join(cur, name)
        st = os.lstat(nxt)
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_LINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            if not _trusted(st.st_uid):
                return f"the link {nxt} on the way to it is owned by {_user(st.st_uid)}"
            target = os.readlink(nxt)
            if target.startswith("/"):
                cur = "/"
                problem = _folder_problem(cur, os.stat(cur))
            todo[:0] = [p for p in target.split("/") if p]
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
        cur = nxt
        problem = _folder_problem(cur, st)
    return problem


def read_credential(path: str | Path, what: str, limit: int = MAX_CREDENTIAL_BYTES) -> bytes:
    """The content of the credential file `path` (the `what` file), read as OpenSSH's StrictModes would.

    Refused with CredentialRefused (a message naming the file, never its content, and what to do): a link at
    its name (it is opened with O_NOFOLLOW); not a regular file (a FIFO is opened without blocking, then
    refused); owned by a user other than this one or root; this user's and `open_to_others`; in a folder, or
    under one, that another user owns or may write (not sticky); larger than `limit` bytes.  OSError when it
    cannot be opened or read (missing, no permission): the caller says what to do."""
    name = os.fspath(Path(path).expanduser())
    shown = os.fspath(path)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(name, flags)
    except OSError as exc:
        # ELOOP (EMLINK on FreeBSD) is O_NOFOLLOW's answer for a link at the last name
        if exc.errno in (errno.ELOOP, errno.EMLINK) and os.path.islink(name):
            raise CredentialRefused(
                f"the {what} file {shown} is a symbolic link: mcfleet does not follow a link to a credential "
                "(whoever can replace the link chooses which file is read and sent)",
                f"name the {what} file itself rather than a link to it, or replace the link with the file (mode 0600)",
            ) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CredentialRefused(
                f"the {what} file {shown} is {_kind(st.st_mode)}, not a regular file",
                f"name a regular file (mode 0600) holding the {what}",
            )
        if not _trusted(st.st_uid):
            raise CredentialRefused(
                f"the {what} file {shown} is owned by {_user(st.st_uid)}, not by "
                f"{'root' if os.geteuid() == 0 else f'you ({_login()}) or root'}: that user can replace the {what}",
                f"check that {shown} holds the {what} you meant, then chown {_login()} {shown} (or put the {what} "
                "in a file of your own)",
            )
        if too_open := open_to_others(st):
            message, hint = refusal(what, shown, too_open)
            raise CredentialRefused(message, hint)
        if problem := _check_folders(name):
            raise CredentialRefused(
                f"the {what} file {shown} cannot be trusted: {problem}, so another user can replace the {what} "
                "with any file, or a link to one",
                f"move the {what} to a folder that only you and root can write (such as /etc/mcfleet as root, "
                "~/.config/mcfleet otherwise) and name it there, or make each folder above it owned by root or "
                "you and not writable by group or others",
            )
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(limit + 1 - size, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise CredentialRefused(
                f"the {what} file {shown} is larger than {limit} bytes: not a {what}",
                f"check the path: it should name the file holding only the {what}",
            )
        return b"".join(chunks)
    finally:
        os.close(fd)


def trusted_public_file(path: str | Path, what: str) -> str:
    """The resolved path of `path`, a file anyone may read but whose content decides whom mcfleet trusts (the
    `what`: a CA bundle, which decides which server is sent a token).  Links are followed, as the system's own
    CA files are links, but every folder and link on the way to its name and every folder on the way to where
    it leads must be root's or this user's and writable by no one else (sticky folders excepted), and the file
    must be a regular file of root or this user that its group and others cannot write: otherwise another
    user could put its own CA there and read what mcfleet sends.  A link at the name itself is not judged: it
    lies in a folder only trusted users can change, and the path returned (the one to load) is where it led
    when checked.  CredentialRefused when not; OSError when it cannot be found or read."""
    name = os.fspath(Path(path).expanduser())
    shown = os.fspath(path)
    real = os.path.realpath(name)
    st = os.stat(real)
    problem = _check_folders(name) or _check_folders(real)
    if not stat.S_ISREG(st.st_mode):
        problem = f"it is {_kind(st.st_mode)}, not a regular file"
    elif not _trusted(st.st_uid):
        problem = f"it is owned by {_user(st.st_uid)}"
    elif st.st_mode & 0o022:
        problem = f"its group or others may write it (mode {stat.S_IMODE(st.st_mode):04o})"
    if problem:
        raise CredentialRefused(
            f"the {what} {shown} cannot be trusted: {problem}, so another user could put a certificate of its "
            "own there and receive what mcfleet sends",
            f"keep the {what} in a file owned by root or you, mode 0644 or stricter, in a folder that only you "
            "and root can write",
        )
    return real
