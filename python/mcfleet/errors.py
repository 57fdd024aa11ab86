"""One error family for the whole tool.

Every error mcfleet raises on purpose is a :class:`McfleetError`: a one-sentence
``message`` (what failed), an optional ``location`` (file + JSON pointer, or
host + phase) and a ``hint`` (what to do).  The CLI catches this family once, at
its boundary, prints ``format()`` and exits with ``exit_code``; tracebacks are
only shown with ``--debug``.  Exit codes are one contract for every command
(EXIT_TABLE; the README prints the same table).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130
EXIT_CHANGES = 2  # only with `plan --detailed-exitcode`, where every other outcome but "no changes" is 1

EXIT_TABLE: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "ok: done, or nothing to do"),
    (
        EXIT_FAILURE,
        "failure: a host, peer or step failed, a rollback happened, or mcfleet refused "
        "(a refusal in the plan, a stale plan, the fleet is locked, the prompt was answered no)",
    ),
    (EXIT_INVALID, "invalid input or usage: fleet files, arguments, a plan file that is not one"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
)
DETAILED_EXIT_TABLE: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "no changes"),
    (
        EXIT_FAILURE,
        "everything else: failure, refusal, a backend not read (drift there unknown), invalid input, interrupted",
    ),
    (EXIT_CHANGES, "changes pending"),
)


class McfleetError(Exception):
    """Base of every error mcfleet raises on purpose."""

    exit_code: int = EXIT_FAILURE
    kind: str = "error"

    def __init__(self, message: str, *, location: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.hint = hint

    def format(self) -> str:
        """The text a user sees: `error: <location>: <message>` plus a hint line."""
        head = f"{self.kind}: "
        if self.location:
            head += f"{self.location}: "
        text = head + self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def as_dict(self) -> dict[str, str | int | None]:
        return {
            "kind": self.kind,
            "message": self.message,
            "location": self.location,
            "hint": self.hint,
            "exit_code": self.exit_code,
        }

    def __str__(self) -> str:
        return self.format()


class InputError(McfleetError):
    """Bad input: a host/service/fleet file, a plan file, a CLI argument."""

    exit_code = EXIT_INVALID
    kind = "invalid input"


class FleetInvalid(InputError):
    """`validate` found problems; carries the findings (see fleet.findings)."""

    kind = "invalid fleet"

    def __init__(self, findings: list[object], *, root: str) -> None:
        count = len(findings)
        super().__init__(
            f"{count} problem{'s' if count != 1 else ''} in the fleet",
            location=root,
            hint="run `mcfleet validate` to see each finding with its file, field and fix",
        )
        self.findings = findings

    def format(self) -> str:
        """The summary and hint, then the first findings themselves: an error must say what is wrong."""
        lines = [super().format()]
        for finding in self.findings[:5]:
            fmt = getattr(finding, "format", None)
            first_line = fmt().splitlines()[0] if callable(fmt) else str(finding)
            lines.append(f"  - {first_line}")
        if len(self.findings) > 5:
            lines.append(f"  … and {len(self.findings) - 5} more")
        return "\n".join(lines)


class SelectionError(InputError):
    """A `--on` selector that names nothing, or a name that does not exist."""

    kind = "invalid selection"


class PeerError(McfleetError):
    """A peer (SSH host, DNS server, ACME CA, proxy, agent) answered wrongly or not at all."""

    kind = "peer error"


class ToolMissing(McfleetError):
    """A program mcfleet needs (nix, podman, sshd, knotd...) is not installed."""

    kind = "missing tool"


class LabError(McfleetError):
    """The local lab could not be brought up or down."""

    kind = "lab error"


class ApplyError(McfleetError):
    """A step of `apply` failed on a host."""

    kind = "apply failed"


class SnapshotError(ApplyError):
    """`mcfleet snapshot` failed on the service's node."""

    kind = "snapshot failed"


class RestoreError(ApplyError):
    """`mcfleet restore` failed on the service's node."""

    kind = "restore failed"


class Refused(McfleetError):
    """mcfleet refuses to do something dangerous (UID change, stale plan, second apply): exit 1 everywhere."""

    exit_code = EXIT_FAILURE
    kind = "refused"


class Interrupted(McfleetError):
    """The run was stopped at Ctrl-C (journalled as such; the CLI prints its own line and exits 130)."""

    exit_code = EXIT_INTERRUPTED
    kind = "interrupted"
