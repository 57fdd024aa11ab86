"""Print the command line `mcfleet plan` sends to each host of a fleet folder, as JSON {host: line}.

    .venv/bin/python bench/plan/facts_scripts.py FLEET_DIR

That is mcfleet's facts script for the host, wrapped as mcfleet's SSH transport wraps every
command for a root login (`setsid -w` in its own process group, which it prints to stderr).
The floor, pyinfra and Ansible run exactly these lines (bench/plan/run.py), so the node does
the same work for each tool as for `mcfleet plan`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mcfleet.fleet.desired import desired_state
from mcfleet.fleet.load import load_fleet
from mcfleet.observe.collect import script_inputs
from mcfleet.observe.script import facts_script
from mcfleet.transport.base import grouped, shell_line


def scripts(fleet_dir: Path) -> dict[str, str]:
    loaded = load_fleet(fleet_dir)
    desired = desired_state(loaded)
    return {
        name: shell_line(grouped(facts_script(script_inputs(loaded, entry, desired[name]))), become=None)
        for name, entry in loaded.hosts.items()
    }


if __name__ == "__main__":
    print(json.dumps(scripts(Path(sys.argv[1]))))
