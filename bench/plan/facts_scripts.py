"""Print mcfleet's facts script for every host of a fleet folder, as JSON {host: script}.

    .venv/bin/python bench/plan/facts_scripts.py FLEET_DIR

The floor (floor.py) runs exactly these over bare asyncssh, so the node does the same work
for the floor as for `mcfleet plan`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mcfleet.fleet.desired import desired_state
from mcfleet.fleet.load import load_fleet
from mcfleet.observe.collect import script_inputs
from mcfleet.observe.script import facts_script


def scripts(fleet_dir: Path) -> dict[str, str]:
    loaded = load_fleet(fleet_dir)
    desired = desired_state(loaded)
    return {name: facts_script(script_inputs(loaded, entry, desired[name])) for name, entry in loaded.hosts.items()}


if __name__ == "__main__":
    print(json.dumps(scripts(Path(sys.argv[1]))))
