"""Apply events, NDJSON stream and the final summary (exit codes, "rolled back")."""

from __future__ import annotations

import io
import json

from mcfleet.apply.events import ApplyEvents, Phase, Status, ndjson_writer
from mcfleet.apply.summary import summarize

PHASES = [Phase.build, Phase.push, Phase.activate, Phase.manifest]


def test_rolled_back_host_makes_exit_1_and_says_so() -> None:
    log = ApplyEvents()
    log.emit("a", Phase.build, Status.unchanged, "pex 1234")
    log.emit("a", Phase.push, Status.changed, "old -> new", bytes_sent=100)
    log.emit("a", Phase.activate, Status.rolled_back, "new agent not healthy; previous agent serves again")
    log.emit("a", Phase.manifest, Status.skipped, "an earlier phase did not succeed")
    log.emit("b", Phase.build, Status.unchanged)
    log.emit("b", Phase.push, Status.unchanged, "already has", bytes_sent=0)
    log.emit("b", Phase.activate, Status.unchanged)
    log.emit("b", Phase.manifest, Status.unchanged)
    summary = summarize(log, ["a", "b"], PHASES, 1.5)
    assert summary.exit_code == 1
    assert not summary.ok
    text = summary.render()
    assert "a: rolled back" in text
    assert "activate  rolled back" in text
    assert "b: unchanged" in text
    assert summary.bytes_sent == 100 and summary.files_sent == 1
    # what the count is: agent bundles (it said "1 file(s) sent" while the files phase wrote others)
    assert text.endswith("2 host(s): 1 rolled back, 1 unchanged; 1 agent bundle(s) pushed, 100 bytes sent in 1.5 s")
    data = summary.as_dict()
    assert data["hosts"]["a"]["phases"]["activate"]["status"] == "rolled back"
    assert data["exit_code"] == 1


def test_all_unchanged_is_exit_0_with_nothing_sent() -> None:
    log = ApplyEvents()
    for phase in PHASES:
        log.emit("a", phase, Status.unchanged)
    summary = summarize(log, ["a"], PHASES, 0.2)
    assert summary.exit_code == 0
    assert summary.files_sent == 0 and summary.bytes_sent == 0
    assert summary.counts() == {"unchanged": 1}


def test_blocked_build_is_a_failure_and_phase_never_ended_is_skipped() -> None:
    log = ApplyEvents()
    log.emit("rift", Phase.build, Status.start)
    log.emit("rift", Phase.build, Status.blocked, "the NixOS agent closure needs nixpkgs")
    summary = summarize(log, ["rift"], PHASES, 0.1)
    assert summary.exit_code == 1
    host = summary.hosts[0]
    assert [p.status for p in host.phases] == [Status.blocked, Status.skipped, Status.skipped, Status.skipped]
    assert host.status == Status.blocked


def test_ndjson_stream_is_one_json_object_per_event_and_redacts_secrets() -> None:
    out = io.StringIO()
    log = ApplyEvents([ndjson_writer(out)])
    log.emit("a", Phase.push, Status.start)
    log.emit("a", Phase.dns, Status.changed, "record", tsig_secret="c2VjcmV0", bytes_sent=0)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["type"] == "event" and first["host"] == "a" and first["phase"] == "push" and first["status"] == "start"
    assert second["data"]["tsig_secret"] == "***"
    assert "c2VjcmV0" not in out.getvalue()


def test_event_line_is_prefixed_by_host() -> None:
    log = ApplyEvents()
    event = log.emit("node1", Phase.push, Status.changed, "abc -> def")
    assert event.line() == "[node1] push: changed: abc -> def"


def test_phase_order_is_cert_containers_routes_dns() -> None:
    order = sorted(
        [Phase.manifest, Phase.route, Phase.push, Phase.build, Phase.dns, Phase.activate, Phase.deploy, Phase.cert],
        key=lambda p: p.order,
    )
    assert order == [
        Phase.build, Phase.push, Phase.activate, Phase.cert, Phase.deploy, Phase.route, Phase.dns, Phase.manifest
    ]  # fmt: skip


def test_a_run_stopped_midway_says_which_phase_never_ended() -> None:
    """What an interrupted run is journalled with: the phase that had begun (a progress line) is 'started,
    never ended', the later ones 'not run', and the run is neither ok nor exit 0."""
    from dataclasses import replace

    log = ApplyEvents()
    log.emit("a", Phase.build, Status.unchanged, "pex 1234")
    log.emit("a", Phase.push, Status.progress, "1 MB of 22 MB")
    summary = summarize(log, ["a"], PHASES, 3.0)
    rows = {str(p.phase): (p.status, p.message) for p in summary.hosts[0].phases}
    assert rows["push"] == (Status.skipped, "started, never ended")
    assert rows["activate"] == (Status.skipped, "not run")
    assert summary.exit_code == 0  # as far as it went, nothing failed; stopped, it is not a success:
    stopped = replace(summary, interrupted=True)
    assert (stopped.ok, stopped.exit_code, stopped.as_dict()["exit_code"]) == (False, 130, 130)


def test_a_phase_that_ran_twice_shows_both_its_changes_and_its_removals() -> None:
    """A renamed service: the deploy phase creates `greet` (changes first) and later removes `hello` (the
    removals pass). The summary said only the last ("removed hello"), as if nothing had been created."""
    log = ApplyEvents()
    log.emit("a", Phase.deploy, Status.start)
    log.emit("a", Phase.deploy, Status.changed, "services: create greet")
    log.emit("a", Phase.deploy, Status.start)
    log.emit("a", Phase.deploy, Status.changed, "removed hello (hello); volumes kept")
    [row] = summarize(log, ["a"], [Phase.deploy], 1.0).hosts[0].phases
    assert (row.status, row.message) == (Status.changed, "services: create greet; removed hello (hello); volumes kept")
    log.emit("a", Phase.dns, Status.changed, "greet.svc.example.test -> 10.0.0.5")
    log.emit("a", Phase.dns, Status.failed, "dns hello.svc.example.test: the server refused the update")
    dns = summarize(log, ["a"], [Phase.dns], 1.0).hosts[0].phases[0]
    assert dns.status == Status.failed  # the worst of the two
    assert dns.message == ("greet.svc.example.test -> 10.0.0.5; "
                           "dns hello.svc.example.test: the server refused the update")  # fmt: skip


def test_a_backend_the_plan_could_not_read_is_shown_in_its_phases_place() -> None:
    """Seen on the demo lab with the edge's Caddy stopped: apply said `full2: unchanged / manifest unchanged
    nothing to do`, and the plan's `not read` line (drift there neither seen nor repaired) was nowhere.  The
    summary lists it where the phase would be, in text and JSON; it does not change the exit code (as plan's)."""
    from dataclasses import replace

    log = ApplyEvents()
    log.emit("full2", Phase.manifest, Status.unchanged, "nothing to do")
    why = "the proxy was not read (Caddy is not listening on full2): drift not seen"
    summary = replace(summarize(log, ["full2"], [Phase.manifest], 0.4), not_read=(("full2", "route", why),))
    assert summary.render().splitlines()[:3] == [
        "full2: unchanged",
        f"  route     not read    {why}",
        "  manifest  unchanged   nothing to do",
    ]
    assert summary.as_dict()["hosts"]["full2"]["not_read"] == {"route": why}
    assert summary.exit_code == 0
