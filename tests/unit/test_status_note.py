"""`mcfleet status`'s NOTE says why DRIFT is "refused", or which backend the plan could not read
(was: "refused" and "-", with nothing to say what to look at)."""

from __future__ import annotations

import json
from typing import Any

from mcfleet.cli.commands_status import HostStatus, status_note
from mcfleet.plan.model import Action, Plan, Unobserved

LONG = "no operator identity to decrypt secrets: /root/.config/mcfleet/age.key: No such file or directory (set it)"


def refuse(subject: str, reason: str) -> Action:
    return Action(host="full1", phase="files", kind="refuse", subject=subject, reason=reason)


def test_the_first_refusal_is_named_shortened_with_how_many_more() -> None:
    actions = [refuse("file /srv/sni/tls.key", LONG), refuse("file /srv/db/key", "x")]
    note = status_note("full1", actions, Plan(hosts=["full1"]))
    assert note is not None and note.startswith("file /srv/sni/tls.key: no operator identity to decrypt")
    assert note.endswith("… (+1 more)") and len(note) < 130
    row = HostStatus("full1", True, agent_health="SERVING", refused=2, note=note).row()
    assert row[5] == "refused" and row[6] == note


def test_a_service_down_comes_before_a_refusal_in_the_note() -> None:
    """An outage first: with a refusal (here: no age identity on this machine) NOTE showed only the
    refusal, and the service that was down was named nowhere in the table."""
    note = status_note("full1", [refuse("file /srv/sni/tls.key", LONG)], Plan(hosts=["full1"]))
    row = HostStatus("full1", True, agent_health="SERVING", services_up=3, services_total=4, refused=1, note=note,
                     not_up=("api: exited",)).row()  # fmt: skip
    assert row[5] == "refused" and row[6] == f"not up: api: exited; {note}"


def test_json_has_every_refusal_in_full() -> None:
    """The table's NOTE is shortened; a script reading --json gets each refusal whole (was: only the
    shortened note, cut at 80 characters with "…")."""
    from mcfleet.cli.commands_status import refusal_lines

    change = Action(host="full1", phase="deploy", kind="update", subject="service api", reason="image")
    actions = [refuse("file /srv/sni/tls.key", LONG), change, refuse("file /srv/db/key", "x")]
    status = HostStatus("full1", True, refused=2, note=status_note("full1", actions, Plan(hosts=["full1"])),
                        refusals=refusal_lines(actions))  # fmt: skip
    assert status.as_dict()["refusals"] == (f"file /srv/sni/tls.key: {LONG}", "file /srv/db/key: x")
    assert status.row()[6] == status.note and "…" in status.row()[6]


def test_a_backend_not_read_is_pointed_at_and_a_clean_host_has_no_note() -> None:
    plan = Plan(hosts=["full1"], unobserved=[Unobserved(host="full1", phase="dns", reason="timed out")])
    assert status_note("full1", [], plan) == "dns not read: see `mcfleet plan --on full1`"
    assert status_note("full2", [], plan) is None


def test_a_running_container_that_fails_its_health_check_is_not_up_and_is_named() -> None:
    """SERVICES counted running containers: one that ran and answered 500 counted as up, and status
    exited 0.  Now the agent's check decides; an agent too old to check leaves the running count.
    NOTE names why a service is not up: its check, its container's state, or no container."""
    from mcfleet.cli.commands_status import services_up
    from mcfleet.observe.facts import ContainerFacts

    def c(name: str, service: str, state: str = "running") -> ContainerFacts:
        return ContainerFacts(name=name, image="i", state=state, labels={"io.mcfleet.service": service})

    running = [
        c("web", "web"),
        c("api-app", "api"),
        c("api-db", "api"),
        c("old", "gone"),
        c("web.old", "web", "exited"),
    ]
    assert services_up({"web", "api"}, running, None) == (2, [])
    assert services_up({"web", "api"}, running, {"web": "", "api-app": "", "api-db": ""}) == (2, [])
    sick = {"web": "", "api-app": "", "api-db": "tcp check: [Errno 111] Connect call failed"}
    assert services_up({"web", "api"}, running, sick) == (1, ["api-db: tcp check: [Errno 111] Connect call failed"])
    assert services_up({"web", "api"}, [c("web", "web"), c("api-app", "api", "exited")], None) == (
        1,
        ["api-app: exited"],
    )
    assert services_up({"web", "api"}, [], None) == (0, ["api: no container", "web: no container"])
    # stopped by an operator: down on purpose, and said so (status said only "hello: exited")
    stopped = [c("web", "web"), c("api-app", "api", "exited"), c("api-db", "api", "exited")]
    assert services_up({"web", "api"}, stopped, None, stopped={"api"}) == (
        1,
        ["api-app: exited (stopped with `mcfleet agent stop`)", "api-db: exited (stopped with `mcfleet agent stop`)"],
    )
    # a crash loop, caught running or stopped: named as one (was "api-app: stopped" or up, by turns)
    for state in ("running", "stopped"):
        looping = c("api-app", "api", state).model_copy(update={"restarts": 7, "up_s": 0.1})
        assert services_up({"web", "api"}, [c("web", "web"), looping, c("api-db", "api")], {"api-app": ""}) == (
            1,
            ["api-app: crash loop: podman restarted it 7 times"],
        ), state
    # its port forwarder gone: said as such, not as the failing check it causes
    cut_off = c("api-app", "api").model_copy(update={"unforwarded": ["127.0.0.1:20001"]})
    refused = {"api-app": "tcp check: [Errno 111] Connect call failed", "api-db": ""}
    assert services_up({"api"}, [cut_off, c("api-db", "api")], refused) == (
        0,
        ["api-app: nothing listens on 127.0.0.1:20001 (its port forwarder is gone)"],
    )
    row = HostStatus("full1", True, agent_health="SERVING", services_up=1, services_total=2,
                     not_up=("api-db: tcp check: refused",))  # fmt: skip
    assert row.row()[4] == "1/2" and row.row()[6] == "not up: api-db: tcp check: refused" and not row.ok
    assert HostStatus("full1", True, agent_health="SERVING", services_up=2, services_total=2).ok


def test_a_boot_that_failed_or_is_tried_again_is_said_before_what_is_not_up() -> None:
    """A failed boot leaves later stages down while the agent tries it again: NOTE says so (was: only
    "not up: web0: no container", as if nothing would bring it back)."""
    from mcfleet.cli.commands_status import boot_note

    failed = {"state": "failed", "stage": "core", "what": "boot", "attempt": 3, "retry_at": 1035.2}
    assert boot_note(failed, now=1000.0) == "failed at stage core, next try in 35 s (attempt 3)"
    assert boot_note({**failed, "retry_at": 0.0, "attempt": 1}, now=1000.0) == "failed at stage core"
    assert boot_note({**failed, "state": "running", "attempt": 2}, now=0) == "running stage core (attempt 2)"
    assert boot_note({**failed, "state": "running", "attempt": 1}, now=0) is None  # the first boot, under way
    assert boot_note({**failed, "state": "ok"}, now=0) is None
    assert boot_note({**failed, "what": "recover"}, now=0) is None
    assert boot_note(None, now=0) is None  # an agent that does not say
    down = ("core0: no container", "web0: no container")
    row = HostStatus("full1", True, agent_health="SERVING", services_up=1, services_total=3, not_up=down,
                     boot=boot_note(failed, now=1000.0))  # fmt: skip
    assert row.row()[6] == (
        "boot failed at stage core, next try in 35 s (attempt 3); not up: core0: no container (+1 more)"
    )
    assert not row.ok and row.as_dict()["boot"] == "failed at stage core, next try in 35 s (attempt 3)"


def test_agent_status_notes_a_boot_that_has_not_ended_healthy() -> None:
    from mcfleet.apply.status import AgentStatus, status_row

    row = status_row(AgentStatus("full1", True, version="0.1.0", unit="active", health="SERVING",
                                 boot="failed at stage core, next try in 35 s (attempt 3)"))  # fmt: skip
    assert row[5] == "boot failed at stage core, next try in 35 s (attempt 3)"
    assert status_row(AgentStatus("full1", True, version="0.1.0", unit="active", health="SERVING"))[5] == ""


def test_a_tls_route_whose_handshake_gets_no_certificate_is_an_outage_in_note_after_services() -> None:
    """The plan's facts ask the host's proxy, as a client would, for each TLS route's certificate: one that
    gets none (listener gone, certificate entry removed, the proxy hung) is said in NOTE and fails `ok`."""
    from mcfleet.cli.commands_status import routes_not_served

    served = {"443/hello.example.test": "", "443/api.example.test": "ab" * 32, "8443/db.example.test": ""}
    missing = routes_not_served(served, "10.0.0.5")
    assert missing == ("443/hello.example.test (a handshake at 10.0.0.5:443 gets no certificate)",
                       "8443/db.example.test (a handshake at 10.0.0.5:8443 gets no certificate)")  # fmt: skip
    assert routes_not_served(None, "10.0.0.5") == () == routes_not_served({"443/a": "cd" * 32}, "10.0.0.5")
    row = HostStatus("edge", True, agent_health="SERVING", services_up=0, services_total=1, note="dns not read",
                     not_up=("web: no container",), not_served=missing)  # fmt: skip
    assert row.row()[6] == ("not up: web: no container; no TLS: 443/hello.example.test (a handshake at "
                            "10.0.0.5:443 gets no certificate) (+1 more); dns not read")  # fmt: skip
    assert not HostStatus("edge", True, agent_health="SERVING", not_served=missing[:1]).ok
    assert HostStatus("edge", True, agent_health="SERVING").ok


def test_drift_is_unknown_when_a_backend_was_not_read_and_the_host_is_not_ok() -> None:
    """Seen on the demo lab with the edge's Caddy stopped: DRIFT said "no" and status exited 0 (ok) while
    the plan could not read the proxy, so drift there was not known."""
    plan = Plan(hosts=["full2"], unobserved=[Unobserved(host="full2", phase="route", reason="not listening")])
    unread = HostStatus("full2", True, agent_health="SERVING", services_up=0, services_total=0, unread=1,
                        note=status_note("full2", [], plan))  # fmt: skip
    assert unread.row()[5] == "unknown" and unread.row()[6] == "route not read: see `mcfleet plan --on full2`"
    assert not unread.ok
    read = HostStatus("full2", True, agent_health="SERVING", services_up=0, services_total=0)
    assert read.row()[5] == "no" and read.ok


def test_status_watch_json_prints_one_document_per_line(monkeypatch: Any) -> None:
    """`status --watch --json` is NDJSON: one compact document per read, each with its time (was: indented
    documents one after another, which no JSON reader takes)."""
    import time as time_module
    from pathlib import Path

    from typer.testing import CliRunner

    from mcfleet.cli import commands_status
    from mcfleet.cli.app import app
    from mcfleet.cli.commands_status import HostStatus

    minimal = Path(__file__).resolve().parent.parent / "data" / "fleets" / "minimal"
    reads = iter(range(1, 10))

    def collect(_loaded: Any, names: list[str], _timeout: float) -> tuple[list[HostStatus], dict[str, Any]]:
        n = next(reads)
        return [HostStatus(name, True, services_up=n, services_total=2) for name in names], {}

    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(commands_status, "collect", collect)
    monkeypatch.setattr(time_module, "sleep", sleep)
    res = CliRunner().invoke(app, ["-C", str(minimal), "status", "--watch", "--json", "--interval", "1"])
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    docs = [json.loads(line) for line in lines]
    assert len(docs) == 2 and all("at" in d and "hosts" in d for d in docs), res.stdout
    assert [d["hosts"][0]["services_up"] for d in docs] == [1, 2]


def test_a_host_whose_login_may_not_become_root_answered_and_says_so() -> None:
    """A missing sudo/doas rule is not an unreachable host (was: REACHABLE no, "unreachable: …")."""
    row = HostStatus("orion", False, error="sudo: a password is required", cause="escalation").row()
    assert row[1] == "yes" and row[-1] == "cannot run as root: sudo: a password is required"
    changed = HostStatus("orion", False, error="presented a host key that does not match", cause="host-key").row()
    assert changed[1] == "no" and str(changed[-1]).startswith("host key changed: ")
    assert HostStatus("orion", False, error="timed out").row()[-1] == "unreachable: timed out"
