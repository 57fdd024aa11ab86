"""A file `--bundle` accepts (a zip archive with PEX-INFO, as every PEX is) that is not a working agent:
a shell script in front of the archive, run by its shebang, so the node runs the script."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path


def pex_shaped(dest: Path, script: str = "#!/bin/sh\nexit 1\n") -> Path:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("PEX-INFO", "{}")
    dest.write_bytes(script.encode() + archive.getvalue())
    dest.chmod(0o755)
    return dest
