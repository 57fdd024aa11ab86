"""A file holding a secret on the operator's machine that other users can get at is refused, as OpenSSH refuses
such a private key: whoever can read it holds the credential, and whoever can write it chooses it."""

from __future__ import annotations

import os
import stat


def open_to_others(st: os.stat_result) -> str | None:
    """'mode 0644' when the file is this user's and its mode gives group or others any access; None otherwise.
    A file another user owns (a key shared through a group) is that user's to guard, as with OpenSSH."""
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
