"""`<fleet>/.mcfleet/`: the local state a fleet checkout accumulates (journal, apply lock, known_hosts,
what each host last left on its node).

It is machine-local and never belongs in the fleet's git history, so the folder carries its own
`.gitignore` (`*`): ignored even in a checkout whose top-level .gitignore does not mention it.
"""

from __future__ import annotations

from pathlib import Path

STATE_DIR = ".mcfleet"
GITIGNORE = "# mcfleet's local state (journal, apply lock, known_hosts): never commit it\n*\n"


def state_dir(fleet_root: Path) -> Path:
    """The fleet's state folder, created (with its .gitignore) if missing."""
    path = fleet_root / STATE_DIR
    path.mkdir(parents=True, exist_ok=True)
    ignore = path / ".gitignore"
    if not ignore.exists():
        ignore.write_text(GITIGNORE)
    return path
