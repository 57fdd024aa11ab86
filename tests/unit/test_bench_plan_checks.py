"""The plan bench's output checks (bench/plan/checks.py): a run that exited 0 but brought back fewer
hosts' facts than it was given stops the bench instead of being timed as a success."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_script

checks = load_script("bench/plan/checks.py", "bench_plan_checks")
HOSTS = {"bench1", "bench2", "bench3"}


def recap(*rows: tuple[str, int, int, int]) -> str:
    head = "PLAY [all] ***\n\nTASK [mcfleet's facts script] ***\nok: [bench1]\n\nPLAY RECAP ***\n"
    return head + "".join(
        f"{h:<26} : ok={ok:<4} changed=0    unreachable={unreach:<4} failed={failed:<4} skipped=0    rescued=0    "
        "ignored=0   \n"
        for h, ok, unreach, failed in rows
    )


def test_every_tool_passes_with_all_hosts() -> None:
    checks.check_floor(json.dumps({h: 2400 for h in HOSTS}), HOSTS)
    checks.check_mcfleet(json.dumps({"hosts": sorted(HOSTS), "facts_digests": {h: "ab" for h in HOSTS}}), HOSTS)
    checks.check_done({h: "2400" for h in HOSTS}, HOSTS)
    checks.check_ansible(recap(*((h, 1, 0, 0) for h in sorted(HOSTS))), HOSTS)


def test_a_missing_host_is_named() -> None:
    with pytest.raises(checks.Incomplete, match=r"mcfleet: facts of 2/3 hosts \(missing: bench3\)"):
        checks.check_mcfleet(json.dumps({"facts_digests": {"bench1": "a", "bench2": "b"}}), HOSTS)
    with pytest.raises(checks.Incomplete, match="pyinfra: facts of 2/3"):
        checks.check_done({"bench1": "10", "bench2": "10", "bench3": ""}, HOSTS)  # an empty output is no facts
    with pytest.raises(checks.Incomplete, match="floor: facts of 2/3"):
        checks.check_floor(json.dumps({"bench1": 10, "bench2": 10, "bench3": 0}), HOSTS)


@pytest.mark.parametrize(
    "row", [("bench2", 0, 1, 0), ("bench2", 0, 0, 1), ("bench2", 1, 0, 1)], ids=["unreachable", "failed", "ok+failed"]
)
def test_ansible_needs_every_host_ok_in_the_recap(row: tuple[str, int, int, int]) -> None:
    rows = [("bench1", 1, 0, 0), row, ("bench3", 1, 0, 0)]
    with pytest.raises(checks.Incomplete, match=r"ansible: facts of 2/3 hosts \(missing: bench2\)"):
        checks.check_ansible(recap(*rows), HOSTS)
    with pytest.raises(checks.Incomplete):  # no recap at all (e.g. the play never ran)
        checks.check_ansible("ERROR! the playbook could not be found\n", HOSTS)
