"""pyinfra deploy (run with --dry): each host runs mcfleet's own facts script for that host.

One `Command` fact per host, the script as its command (scripts.json, {host name: script}, in
the working folder), so the node does the same work as for `mcfleet plan` and the floor.  The
fact's output must end with the script's last line (`end`); the host's name is then written
to done/ with the output's length, which the bench counts (pyinfra carries on without a host
it cannot reach).  Nothing is changed.
"""

import json
from pathlib import Path

from pyinfra import host
from pyinfra.facts.server import Command

script = json.loads(Path("scripts.json").read_text())[host.name]
out = host.get_fact(Command, command=script)
if out.rstrip("\n").rsplit("\n", 1)[-1] != "end":
    raise RuntimeError(f"{host.name}: the facts script's output does not end with `end`")
Path("done", host.name).write_text(str(len(out)))
