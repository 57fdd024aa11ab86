"""ReconcileServices against real podman: containers with ports, env, volumes, labels, stages."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mcfleet.agent.client import AgentClient
from mcfleet.fleet.models import Health, Service
from mcfleet.kinds.service import failing_checks, waiting_behind
from tests.fixtures_agent import AgentRunner, PodmanLab, three_stages, web_service, with_ports

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def _env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_reconcile_runs_desired_containers(agent_podman: PodmanLab, agent_runner: AgentRunner, tmp_path: Path) -> None:
    agent = agent_runner.start(podman=agent_podman)
    services = three_stages(tmp_path, agent_podman.image)

    async def scenario() -> None:
        async with AgentClient(str(agent.socket)) as client:
            result = await client.reconcile(with_ports(services), stage_timeout_s=30)
            assert result.ok, result.error
            assert list(result.stages_healthy) == ["foundation", "core", "services"]
            ports = {p.service: dict(p.ports) for p in result.ports}
            assert set(ports) == {"dns", "proxy", "app"}
            app_port = ports["app"]["app/web"]
            dns_port = ports["dns"]["dns/0"]
            assert len({app_port, dns_port, ports["proxy"]["proxy/0"]}) == 3

            # The container answers on its published port with the volume's content.
            assert agent_podman.http_get(dns_port) == "hello from dns\n"
            assert agent_podman.http_get(app_port) == "hello from app\n"
            # Env: the service's own variables plus $PORT / $PORT_<NAME>.
            dns_env = _env(tmp_path / "data/dns/env")
            assert dns_env["GREETING"] == "hello-dns"
            assert dns_env["PORT"] == "8080"  # the container port the program listens on
            app_env = _env(tmp_path / "data/app/env")
            assert app_env["PORT_WEB"] == "8080"
            assert "PORT" not in app_env
            # Labels mark them as ours.
            inspect = json.loads(agent_podman.remote("inspect", "dns", "app"))
            labels = {c["Name"].lstrip("/"): c["Config"]["Labels"] for c in inspect}
            assert labels["dns"]["io.mcfleet.managed"] == "true"
            assert labels["app"]["io.mcfleet.stage"] == "services"
            assert labels["app"]["io.mcfleet.service"] == "app"
            assert len(labels["app"]["io.mcfleet.spec-hash"]) == 16
            # User and restart policy as declared.
            config = {c["Name"].lstrip("/"): c for c in inspect}
            assert config["app"]["Config"]["User"] == "0:0"
            assert config["app"]["HostConfig"]["RestartPolicy"]["Name"] == "on-failure"
            assert config["dns"]["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"

            # Same desired state again: nothing is touched, ports stay.
            again = await client.reconcile(with_ports(services), stage_timeout_s=30)
            assert again.ok, again.error
            assert {a.kind for a in again.actions} == {"unchanged"}
            assert {p.service: dict(p.ports) for p in again.ports} == ports

            # A changed env recreates only that container, on the same port.
            changed = [
                *services[:2],
                web_service(
                    tmp_path,
                    "app",
                    "services",
                    agent_podman.image,
                    env=["GREETING=v2"],
                    route_name="web",
                    user="0:0",
                    restart="on-failure",
                ),
            ]
            third = await client.reconcile(with_ports(changed), stage_timeout_s=30)
            assert third.ok, (third.error, list(third.actions))
            kinds = {a.container: a.kind for a in third.actions}
            assert kinds == {"dns": "unchanged", "proxy": "unchanged", "app": "recreate"}
            assert _env(tmp_path / "data/app/env")["GREETING"] == "v2"
            assert agent_podman.http_get(app_port) == "hello from app\n"

            await _lifecycle(client, agent_podman, tmp_path, changed)

    asyncio.run(scenario())


async def _lifecycle(client: AgentClient, agent_podman: PodmanLab, tmp_path: Path, changed: list[Service]) -> None:
    # Stop / Start / Restart one service.
    stopped = await client.stop("proxy")
    assert stopped.ok and [a.kind for a in stopped.actions] == ["stop"]
    assert json.loads(agent_podman.remote("inspect", "proxy"))[0]["State"]["Running"] is False
    # a container already stopped is stopped again without an error (podman's 304; was: "podman stop of
    # proxy failed: 0", which a restart met when podman was between two runs of a crash loop)
    again = await client.stop("proxy")
    assert again.ok, again.error
    started = await client.start("proxy", stage_timeout_s=30)
    assert started.ok, started.error
    assert [a.kind for a in started.actions] == ["start"]
    restarted = await client.restart("proxy", stage_timeout_s=30)
    assert restarted.ok, restarted.error
    assert (tmp_path / "data/proxy/starts").read_text().count("start") == 3

    # A service no longer desired is removed (its data stays).
    pruned = await client.reconcile(with_ports(changed[:2]), stage_timeout_s=30)
    assert pruned.ok, pruned.error
    assert [(a.container, a.kind) for a in pruned.actions if a.kind == "remove"] == [("app", "remove")]
    names = agent_podman.remote("ps", "-a", "--format", "{{.Names}}").split()
    assert sorted(names) == ["dns", "proxy"]
    assert (tmp_path / "data/app/env").exists()


def test_a_registered_service_that_cannot_start_does_not_fail_a_deploy_of_others(
    agent_podman: PodmanLab, agent_runner: AgentRunner, tmp_path: Path
) -> None:
    """A deploy whose image does not exist leaves its service in the registry (written first).  A later
    deploy asks for the others only: it converges those alone (was: every registered service, so the
    ghost failed every later deploy on the host).  A prune then drops the ghost from the registry."""
    agent = agent_runner.start(podman=agent_podman)
    dns = web_service(tmp_path, "dns", "foundation", agent_podman.image)
    ghost = web_service(tmp_path, "ghost", "services", "localhost:1/mcfleet-test/no-such-image:1")

    async def scenario() -> None:
        async with AgentClient(str(agent.socket)) as client:
            failed = await client.reconcile(with_ports([dns, ghost]), prune=False, stage_timeout_s=30)
            # podman's own reason for the failed pull (was: the create after it, "image not known")
            assert failed.error.startswith("podman could not pull localhost:1/mcfleet-test/no-such-image:1: ")
            assert "image not known" not in failed.error, failed.error
            # with what to do (was: podman's reason alone, in the deploy's failure line)
            assert "(what to do: check the image's name and tag, and that the node reaches its registry)" in (
                failed.error
            ), failed.error
            assert sorted(e["name"] for e in (await client.facts(events=0))["registry"]) == ["dns", "ghost"]
            again = await client.reconcile(with_ports([dns]), prune=False, stage_timeout_s=30)
            assert again.ok, again.error
            assert {a.service for a in again.actions} == {"dns"}
            pruned = await client.reconcile(with_ports([dns]), prune=True, stage_timeout_s=30)
            assert pruned.ok, pruned.error
            assert [e["name"] for e in (await client.facts(events=0))["registry"]] == ["dns"]
            # an image bump to a tag that does not exist fails at the pull, before the running container
            # is touched (was: the pull "succeeded", the old container was removed, then the create
            # failed: the service was down until the next good deploy)
            before = agent_podman.remote("inspect", "--format", "{{.Id}}", "dns").strip()
            bumped = web_service(tmp_path, "dns", "foundation", "localhost:1/mcfleet-test/dns:no-such-tag")
            failed_bump = await client.reconcile(with_ports([bumped]), prune=False, stage_timeout_s=30)
            assert not failed_bump.ok and "could not pull" in failed_bump.error, failed_bump.error
            assert agent_podman.remote("inspect", "--format", "{{.Id}} {{.State.Status}}", "dns").split() == [
                before, "running"]  # fmt: skip

    asyncio.run(scenario())


def test_a_deploy_does_not_wait_for_a_boot_stuck_on_a_health_check_it_fixes(
    agent_podman: PodmanLab, agent_runner: AgentRunner, tmp_path: Path
) -> None:
    """A registered service's health check can never pass (a wrong path, since fixed in the files). At the
    agent's next start its boot waits on it for the whole stage timeout while holding the reconcile lock,
    so the deploy bringing the fix waited too (measured on the lab: 120 s). The boot now gives way to it."""
    broken = web_service(tmp_path, "web", "services", agent_podman.image,
                         health={"kind": "http", "port": 8080, "path": "/nope", "timeout_s": 1})  # fmt: skip
    fixed = web_service(tmp_path, "web", "services", agent_podman.image)
    first = agent_runner.start(podman=agent_podman, name="boot")

    async def register_broken() -> None:
        async with AgentClient(str(first.socket)) as client:
            failed = await client.reconcile(with_ports([broken]), prune=False, stage_timeout_s=3)
            assert not failed.ok and "/nope" in failed.error

    asyncio.run(register_broken())
    first.stop()
    again = agent_runner.start("--stage-timeout", "120", podman=agent_podman, name="boot")

    async def deploy_the_fix() -> dict[str, object]:
        async with AgentClient(str(again.socket)) as client:
            for _ in range(100):  # the boot is under way: its stage waits on the broken check
                if (await client.facts(events=0))["boot"]["state"] == "running":
                    break
                await asyncio.sleep(0.1)
            done = await client.reconcile(with_ports([fixed]), prune=False, stage_timeout_s=30)
            assert done.ok, done.error
            boot: dict[str, object] = (await client.facts(events=0))["boot"]
            return boot

    boot = asyncio.run(deploy_the_fix())
    # without giving way, the deploy gets the lock only once the boot ended: "failed" after its 120 s
    assert boot["state"] == "superseded" and boot["stage"] == "services", boot
    assert "gave way at stage services to a deploy" in str(boot["error"])


def test_a_changed_definition_that_cannot_start_keeps_the_old_container_running(
    agent_podman: PodmanLab, agent_runner: AgentRunner, tmp_path: Path
) -> None:
    """A spec change whose new container podman cannot create (its volume cannot be made) or start (its
    user does not exist), or that does not get healthy, puts the old container back, running, under its
    name: the service stays up on its previous definition (was: the old container was removed first, and
    the service was down until the next good deploy).  A good change then replaces it and leaves no
    set-aside container."""
    agent = agent_runner.start(podman=agent_podman)
    web = web_service(tmp_path, "web", "services", agent_podman.image)
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    cannot_create = web.model_copy(update={"components": [web.components[0].model_copy(
        update={"volumes": [*web.components[0].volumes, f"{not_a_dir}/data:/more"]})]})  # fmt: skip
    cannot_start = web_service(tmp_path, "web", "services", agent_podman.image, user="no-such-user")
    empty = tmp_path / "empty-www"
    empty.mkdir()
    # serves an empty folder: its check's /index.html is a 404 (a health change alone recreates nothing)
    never_healthy = web.model_copy(update={"components": [web.components[0].model_copy(
        update={"volumes": [web.components[0].volumes[0], f"{empty}:/www:ro"]})]})  # fmt: skip
    changed = web_service(tmp_path, "web", "services", agent_podman.image, env=["GREETING=v2"])

    def container() -> list[str]:
        names = agent_podman.remote("ps", "-a", "--format", "{{.Names}}").split()
        return [*sorted(names), *agent_podman.remote("inspect", "--format", "{{.Id}} {{.State.Status}}", "web").split()]

    async def scenario() -> None:
        async with AgentClient(str(agent.socket)) as client:
            first = await client.reconcile(with_ports([web]), stage_timeout_s=30)
            assert first.ok, first.error
            before = container()
            assert before[0] == "web" and before[-1] == "running", before
            port = {p.service: dict(p.ports) for p in first.ports}["web"]["web/0"]
            for bad, why in ((cannot_create, "cannot create the data directory"), (cannot_start, "no-such-user"),
                             (never_healthy, "HTTP 404 from /index.html")):  # fmt: skip
                failed = await client.reconcile(with_ports([bad]), stage_timeout_s=4)
                assert not failed.ok and why in failed.error, failed.error
                assert "web keeps running on its previous definition" in failed.error, failed.error
                assert container() == before  # the same container, running, and no other
                # and the registry holds the definition that runs (the agent's next boot brings it up)
                [registered] = (await client.facts(events=0))["registry"]
                assert registered["spec"] == web.model_dump(mode="json", by_alias=True, exclude={"files"})
                assert agent_podman.http_get(port) == "hello from web\n"
            good = await client.reconcile(with_ports([changed]), stage_timeout_s=30)
            assert good.ok, good.error
            assert [a.kind for a in good.actions] == ["recreate"]
            after = container()
            assert after[0] == "web" and len(after) == 3 and after[1] != before[1] and after[2] == "running", after
            assert _env(tmp_path / "data/web/env")["GREETING"] == "v2"
            # an agent that died amid a replace left the old container set aside, running on the ports:
            # the next converge removes it before it brings the service up (a deploy's stage-by-stage
            # calls do not prune: they would have left it, and the new container could not bind its port)
            agent_podman.remote("rename", "web", "web.old")
            healed = await client.reconcile(with_ports([changed]), prune=False, stage_timeout_s=30)
            assert healed.ok, healed.error
            assert [(a.container, a.kind) for a in healed.actions] == [("web.old", "remove"), ("web", "create")]
            assert container()[0] == "web" and len(container()) == 3, container()
            assert agent_podman.http_get(port) == "hello from web\n"

    asyncio.run(scenario())


def _with_cmd(svc: Service, cmd: list[str]) -> Service:
    return svc.model_copy(update={"components": [svc.components[0].model_copy(update={"cmd": cmd})]})


def _id_and_status(podman: PodmanLab, container: str) -> list[str]:
    return podman.remote("inspect", "--format", "{{.Id}} {{.State.Status}}", container).split()


def test_a_deploy_ends_the_wait_for_a_container_that_keeps_stopping(
    agent_podman: PodmanLab, agent_runner: AgentRunner, tmp_path: Path
) -> None:
    """A replacement that exits at once: podman restarts it again and again (restart unless-stopped) while
    the service it replaced is down.  The deploy ends the wait once it has stopped a few times (was: the
    whole stage timeout, 120 s by default, with only "connection refused" to say why) and puts the old
    container back; one that podman does not restart (restart "no") ends it at once.  Outside a deploy
    (the boot) the wait goes on to the stage timeout, whose message counts the restarts."""
    agent = agent_runner.start(podman=agent_podman)
    web = web_service(tmp_path, "web", "services", agent_podman.image)

    def exits(name: str, restart: str) -> Service:
        return _with_cmd(
            web_service(tmp_path, name, "services", agent_podman.image, restart=restart), ["sh", "-c", "exit 3"]
        )

    async def scenario() -> None:
        async with AgentClient(str(agent.socket)) as client:
            assert (await client.reconcile(with_ports([web]), stage_timeout_s=30)).ok
            before = _id_and_status(agent_podman, "web")
            began = time.monotonic()
            looping = await client.reconcile(with_ports([exits("web", "unless-stopped")]), stage_timeout_s=90)
            took = time.monotonic() - began
            assert not looping.ok and took < 45, (took, looping.error)
            assert "web cannot get healthy: its container keeps stopping (restarted " in looping.error, looping.error
            assert "last exit code 3)" in looping.error and "web keeps running on its previous definition" in (
                looping.error
            ), looping.error
            assert _id_and_status(agent_podman, "web") == before
            began = time.monotonic()
            once = await client.reconcile(with_ports([exits("web", "no")]), stage_timeout_s=90)
            assert not once.ok and time.monotonic() - began < 30, once.error
            assert "its container stopped (exit code 3); its restart policy (no) does not start it" in once.error
            assert _id_and_status(agent_podman, "web") == before
            # a new service (nothing to put back) that keeps stopping: registered all the same; a restart of
            # it ends as soon as it keeps stopping too (was: the whole stage timeout), saying so
            both = with_ports([web, exits("bad", "unless-stopped")])
            first = await client.reconcile(both, prune=False, stage_timeout_s=90)
            assert not first.ok and "bad cannot get healthy: its container keeps stopping" in first.error
            began = time.monotonic()
            again = await client.restart("bad", stage_timeout_s=90)
            assert not again.ok and time.monotonic() - began < 45, again.error
            assert "bad cannot get healthy: its container keeps stopping (restarted " in again.error, again.error

    asyncio.run(scenario())
    # the boot waits on to its stage timeout (a dependency may come up late), and counts the restarts
    agent.stop()
    rebooted = agent_runner.start("--stage-timeout", "8", podman=agent_podman)  # 4 s saw no restart under load

    async def boot() -> None:
        async with AgentClient(str(rebooted.socket)) as client:
            for _ in range(120):  # up to 60 s
                info = await client.info()
                if info.boot.state in ("ok", "failed"):
                    break
                await asyncio.sleep(0.5)
            assert info.boot.state == "failed", info.boot
            assert "; meanwhile its container stopped and was restarted " in info.boot.error, info.boot.error

    asyncio.run(boot())


def test_a_container_that_passes_a_tcp_check_or_has_none_and_then_exits_is_not_healthy(
    agent_podman: PodmanLab, agent_runner: AgentRunner, tmp_path: Path
) -> None:
    """A replacement whose program serves for half a second and then exits: its tcp check passes at once
    (the connection stays open), and one without a check is running at once; yet neither is healthy.
    Restarted by podman, the deploy ends on "keeps stopping" and the old container stays; not restarted,
    on its exit.  (Was: the deploy reported it applied as soon as the check passed or the container ran;
    on a loaded CI machine the same happened to a restarted container whose program had already failed,
    podman's port forwarder holding the check's connection open.)"""
    agent = agent_runner.start(podman=agent_podman)
    web = web_service(tmp_path, "web", "services", agent_podman.image)
    serve_then_exit = ["sh", "-c", "httpd -p ${PORT:-$PORT_WEB} -h /www; sleep 0.5; exit 3"]

    def brief(restart: str, health: dict[str, object] | None) -> Service:
        svc = _with_cmd(web_service(tmp_path, "web", "services", agent_podman.image, restart=restart), serve_then_exit)
        return svc.model_copy(update={"components": [svc.components[0].model_copy(update={"health": (
            None if health is None else Health.model_validate(health))})]})  # fmt: skip

    async def scenario() -> None:
        async with AgentClient(str(agent.socket)) as client:
            assert (await client.reconcile(with_ports([web]), stage_timeout_s=30)).ok
            before = _id_and_status(agent_podman, "web")
            for health in ({"kind": "tcp", "port": 8080, "timeout_s": 2}, None):
                looping = await client.reconcile(with_ports([brief("unless-stopped", health)]), stage_timeout_s=60)
                assert not looping.ok, f"a container that exits after 0.5 s was called healthy ({health})"
                assert "web cannot get healthy: its container keeps stopping (restarted " in looping.error, (
                    looping.error
                )
                assert "web keeps running on its previous definition" in looping.error, looping.error
                assert _id_and_status(agent_podman, "web") == before
                once = await client.reconcile(with_ports([brief("no", health)]), stage_timeout_s=60)
                assert not once.ok, f"a container that exits after 0.5 s was called healthy ({health})"
                assert "its container stopped (exit code 3); its restart policy (no) does not start it" in once.error
                assert _id_and_status(agent_podman, "web") == before

    asyncio.run(scenario())


def test_a_port_another_program_holds_is_named_with_what_to_do(
    agent_podman: PodmanLab, agent_runner: AgentRunner, tmp_path: Path
) -> None:
    """A program on the node listens on the host port assigned to a new service: its start fails, and the
    deploy says which address is taken and what to do (was: podman's error alone)."""
    agent = agent_runner.start(podman=agent_podman)
    web = with_ports([web_service(tmp_path, "web", "services", agent_podman.image)])
    port = web[0][1]["web/0"]
    hold = (
        f"import socket, time; s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(); "
        "print(1, flush=True); time.sleep(120)"
    )
    squatter = subprocess.Popen(agent_podman.in_ns(sys.executable, "-c", hold), stdout=subprocess.PIPE, text=True)
    try:
        assert squatter.stdout is not None and squatter.stdout.readline() == "1\n"

        async def deploy() -> str:
            async with AgentClient(str(agent.socket)) as client:
                answer = await client.reconcile(web, stage_timeout_s=30)
                assert not answer.ok
                return answer.error

        error = asyncio.run(deploy())
        assert "address already in use" in error, error
        assert f": another program on the node listens on 127.0.0.1:{port}; `ss -ltnp` there names it: " in error, error
        assert error.endswith("stop it, or give the route another port (`host_port` in web.json)"), error
    finally:
        squatter.kill()
        squatter.communicate()  # reaps it and closes its pipe


def test_a_changed_health_check_that_does_not_pass_keeps_the_previous_definition(
    agent_podman: PodmanLab, agent_runner: AgentRunner, tmp_path: Path
) -> None:
    """Only the health check changes (to a 404): the container is not touched, and when the stage does not
    get healthy the registry gets the previous definition back (was: the new one stayed, so `status` called
    a serving service down by a check it never passed, the plan could not say what changed, and the next
    boot waited on the failing check)."""
    agent = agent_runner.start(podman=agent_podman)
    web = web_service(tmp_path, "web", "services", agent_podman.image)
    missing = {"kind": "http", "port": 8080, "path": "/missing.html", "timeout_s": 2}
    bad_check = web_service(tmp_path, "web", "services", agent_podman.image, health=missing)

    def container() -> list[str]:
        return agent_podman.remote("inspect", "--format", "{{.Id}} {{.State.Status}}", "web").split()

    async def scenario() -> None:
        async with AgentClient(str(agent.socket)) as client:
            first = await client.reconcile(with_ports([web]), stage_timeout_s=30)
            assert first.ok, first.error
            before = container()
            failed = await client.reconcile(with_ports([bad_check]), prune=False, stage_timeout_s=4)
            assert not failed.ok and "HTTP 404 from /missing.html" in failed.error, failed.error
            assert "web keeps its previous definition" in failed.error, failed.error
            assert container() == before and before[-1] == "running"
            [registered] = (await client.facts(events=0))["registry"]
            assert registered["spec"] == web.model_dump(mode="json", by_alias=True, exclude={"files"})
            assert (await client.facts(events=0, check_health=True))["checks"] == {"web": ""}

    asyncio.run(scenario())


def test_a_deploy_whose_caller_goes_away_still_ends_with_its_put_back(
    agent_podman: PodmanLab, agent_runner: AgentRunner, tmp_path: Path
) -> None:
    """The caller of a replace goes away while the agent waits for the new container's check (apply
    interrupted, its SSH connection lost): the agent finishes the call all the same, so a stage that
    does not get healthy still puts the old container back, running, with its registry entry (was: the
    call was cancelled there, leaving `web.old` stopped and the new definition running unchecked; the
    next converge then removed the old container).  Meanwhile Info says what the agent is finishing, and
    a deploy sent then says what it waits behind."""
    agent = agent_runner.start(podman=agent_podman)
    web = web_service(tmp_path, "web", "services", agent_podman.image)
    empty = tmp_path / "empty-www"
    empty.mkdir()
    never_healthy = web.model_copy(update={"components": [web.components[0].model_copy(
        update={"volumes": [web.components[0].volumes[0], f"{empty}:/www:ro"]})]})  # fmt: skip

    def container() -> list[str]:
        names = agent_podman.remote("ps", "-a", "--format", "{{.Names}}").split()
        return [*sorted(names), *agent_podman.remote("inspect", "--format", "{{.Id}} {{.State.Status}}", "web").split()]

    async def deploy_then_leave() -> list[str]:
        async with AgentClient(str(agent.socket)) as client:
            first = await client.reconcile(with_ports([web]), stage_timeout_s=30)
            assert first.ok, first.error
            before = container()
        async with AgentClient(str(agent.socket)) as client:
            call = asyncio.ensure_future(client.reconcile(with_ports([never_healthy]), stage_timeout_s=8))
            await asyncio.sleep(2)  # the new container runs; its check fails (404) until the stage timeout
            assert not call.done()
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
        async with AgentClient(str(agent.socket)) as client:
            # Info says what the agent is still doing; the next deploy waits for it, and can say so
            work = await client.busy()
            assert work is not None and (work.what, list(work.services), work.waiting) == ("deploy", ["web"], 0)
            # the check that keeps the stage waiting, and why: the apply's progress line says it
            assert dict(work.failing) == {"web": "HTTP 404 from /index.html"}, work.failing
            assert await failing_checks(client) == "web: HTTP 404 from /index.html"
            assert await waiting_behind(client) is None  # nothing waits behind it yet
            again = asyncio.ensure_future(client.reconcile(with_ports([web]), prune=False, stage_timeout_s=30))
            await asyncio.sleep(0.5)
            said = await waiting_behind(client)
            assert said is not None and said.startswith("waiting for the agent to finish an earlier deploy of web ("), (
                said
            )
            assert (await again).ok  # after the put-back: the old container has this definition, left as it is
            assert await client.busy() is None
        return before

    async def registered() -> dict[str, object]:
        async with AgentClient(str(agent.socket)) as client:
            [entry] = (await client.facts(events=0))["registry"]
            return dict(entry["spec"])

    before = asyncio.run(deploy_then_leave())
    deadline = time.monotonic() + 60
    while container() != before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert container() == before  # the old container, running, and no other
    assert asyncio.run(registered()) == web.model_dump(mode="json", by_alias=True, exclude={"files"})


def test_facts_can_run_each_running_containers_health_check_now(
    agent_podman: PodmanLab, agent_runner: AgentRunner, tmp_path: Path
) -> None:
    """`mcfleet status` asks for it: a container that runs but fails its check (its page gone: HTTP 404)
    is named with podman's and the check's reason; a plain Facts call runs no check."""
    agent = agent_runner.start(podman=agent_podman)
    web = web_service(tmp_path, "web", "services", agent_podman.image)
    plain = web_service(tmp_path, "plain", "services", agent_podman.image)
    plain = plain.model_copy(update={"components": [plain.components[0].model_copy(update={"health": None})]})

    async def scenario() -> None:
        async with AgentClient(str(agent.socket)) as client:
            done = await client.reconcile(with_ports([web, plain]), stage_timeout_s=30)
            assert done.ok, done.error
            assert "checks" not in await client.facts(events=0)
            assert (await client.facts(events=0, check_health=True))["checks"] == {"web": "", "plain": ""}
            (tmp_path / "www" / "web" / "index.html").unlink()
            checks = (await client.facts(events=0, check_health=True))["checks"]
            assert checks["plain"] == "" and checks["web"] == "http check: HTTP 404 from /index.html", checks
            agent_podman.remote("stop", "plain")
            assert (await client.facts(events=0, check_health=True))["checks"] == {"web": checks["web"]}

    asyncio.run(scenario())


def test_a_stage_that_fails_puts_back_every_container_it_replaced(
    agent_podman: PodmanLab, agent_runner: AgentRunner, tmp_path: Path
) -> None:
    """Two containers of one service both change; one cannot be created (its volume cannot be made). The
    other was replaced meanwhile: it goes back too, so the service runs one definition, the previous one,
    which is also the one its registry holds (was: the new one kept running beside the old one)."""
    agent = agent_runner.start(podman=agent_podman)
    base = web_service(tmp_path, "pair", "services", agent_podman.image)
    one = base.components[0]
    pair = base.model_copy(update={"components": [one.model_copy(update={"name": "a"}),
                                                  one.model_copy(update={"name": "b"})]})  # fmt: skip
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    changed = base.model_copy(update={"components": [
        one.model_copy(update={"name": "a", "env": ["GREETING=v2"]}),
        one.model_copy(update={"name": "b", "volumes": [*one.volumes, f"{not_a_dir}/data:/more"]}),
    ]})  # fmt: skip

    def ids() -> list[str]:
        names = sorted(agent_podman.remote("ps", "-a", "--format", "{{.Names}}").split())
        return [*names, *agent_podman.remote("inspect", "--format", "{{.Id}} {{.State.Status}}", *names).split()]

    async def scenario() -> None:
        async with AgentClient(str(agent.socket)) as client:
            first = await client.reconcile(with_ports([pair]), stage_timeout_s=30)
            assert first.ok, first.error
            before = ids()
            assert before[:2] == ["pair-a", "pair-b"] and before.count("running") == 2, before
            failed = await client.reconcile(with_ports([changed]), stage_timeout_s=30)
            assert not failed.ok and "cannot create the data directory" in failed.error, failed.error
            assert "pair-a keeps running on its previous definition" in failed.error, failed.error
            assert ids() == before
            [registered] = (await client.facts(events=0))["registry"]
            assert registered["spec"] == pair.model_dump(mode="json", by_alias=True, exclude={"files"})

    asyncio.run(scenario())


def test_a_boot_that_gives_way_to_a_deploy_puts_back_what_it_replaced(
    agent_podman: PodmanLab, agent_runner: AgentRunner, tmp_path: Path
) -> None:
    """The registry holds a definition the container does not run (an agent stopped between writing its
    registry and converging).  At the next start the boot replaces the container and waits on a check that
    never passes; a deploy arrives and the boot gives way, putting the old container back first.  So a
    deploy that then fails leaves the old container running (was: the boot's unhealthy replacement)."""
    from mcfleet.agent.registry import Entry, Registry

    good = web_service(tmp_path, "web", "services", agent_podman.image)
    empty = tmp_path / "empty-www"
    empty.mkdir()
    never = good.model_copy(update={"components": [good.components[0].model_copy(
        update={"volumes": [good.components[0].volumes[0], f"{empty}:/www:ro"]})]})  # fmt: skip
    cannot_start = web_service(tmp_path, "web", "services", agent_podman.image, user="no-such-user")
    first = agent_runner.start(podman=agent_podman, name="giveway")

    async def deploy_good() -> int:
        async with AgentClient(str(first.socket)) as client:
            done = await client.reconcile(with_ports([good]), stage_timeout_s=30)
            assert done.ok, done.error
            return {p.service: dict(p.ports) for p in done.ports}["web"]["web/0"]

    port = asyncio.run(deploy_good())
    running = agent_podman.remote("inspect", "--format", "{{.Id}}", "web").strip()
    first.stop()
    registry = Registry(agent_runner.base / "giveway.db")
    [(service, ports)] = with_ports([never])
    registry.upsert([Entry(service, ports)])
    registry.close()
    again = agent_runner.start("--stage-timeout", "120", podman=agent_podman, name="giveway")

    async def deploy_while_the_boot_waits() -> tuple[dict[str, object], str]:
        async with AgentClient(str(again.socket)) as client:
            for _ in range(200):  # the boot has replaced web and waits on its check
                facts = await client.facts(events=0)
                names = {c["name"] for c in facts["containers"]}
                if facts["boot"]["state"] == "running" and "web.old" in names:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"the boot did not replace web: {facts['boot']}, {names}")
            failed = await client.reconcile(with_ports([cannot_start]), prune=False, stage_timeout_s=30)
            assert not failed.ok and "no-such-user" in failed.error, failed.error
            boot: dict[str, object] = (await client.facts(events=0))["boot"]
            return boot, failed.error

    boot, error = asyncio.run(deploy_while_the_boot_waits())
    assert boot["state"] == "superseded", boot
    assert error.endswith("web keeps running on its previous definition"), error
    assert agent_podman.remote("ps", "-a", "--format", "{{.Names}}").split() == ["web"]
    assert agent_podman.remote("inspect", "--format", "{{.Id}} {{.State.Status}}", "web").split() == [
        running, "running"]  # fmt: skip
    assert agent_podman.http_get(port) == "hello from web\n"


def test_a_deploy_whose_image_cannot_be_pulled_keeps_the_previous_definition_registered(
    agent_podman: PodmanLab, agent_runner: AgentRunner, tmp_path: Path
) -> None:
    """Nothing is changed when an image of the stage cannot be pulled: the registry keeps the definition
    that runs, for this stage and the later ones (was: the new one stayed registered, so the plan saw
    "the agent holds another definition" and the next boot would ask for the image that is not there)."""
    agent = agent_runner.start(podman=agent_podman)
    web = web_service(tmp_path, "web", "foundation", agent_podman.image)
    app = web_service(tmp_path, "app", "services", agent_podman.image)

    def with_image(svc: Service, image: str, greeting: str = "") -> Service:
        component = svc.components[0]
        env = [*component.env, f"GREETING={greeting}"] if greeting else component.env
        return svc.model_copy(update={"components": [component.model_copy(update={"image": image, "env": env})]})

    async def scenario() -> None:
        async with AgentClient(str(agent.socket)) as client:
            assert (await client.reconcile(with_ports([web, app]), stage_timeout_s=30)).ok
            before = agent_podman.remote("inspect", "--format", "{{.Id}}", "web").strip()
            missing = with_image(web, "localhost:9/mcfleet-test/nosuch:1")
            changed_app = with_image(app, agent_podman.image, greeting="v2")
            failed = await client.reconcile(with_ports([missing, changed_app]), stage_timeout_s=30)
            assert not failed.ok and "could not pull localhost:9/mcfleet-test/nosuch:1" in failed.error, failed.error
            assert "web keeps its previous definition" in failed.error, failed.error
            assert "app keeps its previous definition" in failed.error, failed.error
            registry = {e["name"]: e["spec"] for e in (await client.facts())["registry"]}
            assert registry["web"]["components"][0]["image"] == agent_podman.image
            assert "GREETING=v2" not in registry["app"]["components"][0]["env"]
            assert agent_podman.remote("inspect", "--format", "{{.Id}}", "web").strip() == before

    asyncio.run(scenario())


def test_a_container_that_crash_loops_is_recreated_from_its_image(
    agent_podman: PodmanLab, agent_runner: AgentRunner, tmp_path: Path
) -> None:
    """A container that its own writable layer makes fail (here its /bin/sh replaced by a script that
    exits) loops under podman's restart policy with its definition unchanged.  The agent's facts count
    podman's restarts, which a plan reads as a crash loop whatever state the container is caught in,
    and a reconcile of the same definition makes a new container from the image, which serves (was:
    started again, it failed again, and the deploy ended on "keeps stopping")."""
    from mcfleet.kinds.service import container_facts

    agent = agent_runner.start(podman=agent_podman)
    web = web_service(tmp_path, "web", "services", agent_podman.image)

    def container(field: str) -> str:
        return agent_podman.remote("inspect", "--format", "{{." + field + "}}", "web").strip()

    async def web_facts(client: AgentClient) -> Any:
        [seen] = [c for c in container_facts(await client.facts(events=0)) if c.name == "web"]
        return seen

    async def scenario() -> None:
        async with AgentClient(str(agent.socket)) as client:
            done = await client.reconcile(with_ports([web]), stage_timeout_s=30)
            assert done.ok, done.error
            assert (await web_facts(client)).crash_loop is None
            first = container("Id")
            broken = (
                "busybox rm /bin/sh && busybox printf '#!/bin/busybox false\\n' > /bin/sh && busybox chmod +x /bin/sh"
            )
            agent_podman.remote("exec", "web", "/bin/busybox", "sh", "-c", broken)
            os.kill(int(container("State.Pid")), signal.SIGKILL)  # a crash: podman's policy restarts it
            for _ in range(100):  # up to 20 s
                seen = await web_facts(client)
                if seen.crash_loop:
                    break
                await asyncio.sleep(0.2)
            assert seen.crash_loop and seen.crash_loop.startswith("crash loop: podman restarted it "), seen
            assert seen.restarts >= 3 and seen.up_s is not None and seen.up_s < 60, seen

            again = await client.reconcile(with_ports([web]), stage_timeout_s=30)
            assert again.ok, again.error
            [recreated] = [a for a in again.actions if a.container == "web"]
            assert recreated.kind == "recreate" and recreated.reason.startswith("crash loop:"), recreated
            assert container("Id") != first
            port = int(agent_podman.remote("port", "web").split(":")[-1])
            assert agent_podman.http_get(port) == "hello from web\n"
            assert (await web_facts(client)).crash_loop is None
            assert "web.old" not in agent_podman.remote("ps", "-a", "--format", "{{.Names}}").split()

    asyncio.run(scenario())
