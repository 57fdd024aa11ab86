"""The agent's gRPC server: grpc.health.v1 + mcfleet.agent.v1.Agent on a unix socket.

Health service names:
  ""                        the node's agent as a whole: SERVING while podman's API answers,
                            NOT_SERVING while it does not (the reason is Info.health_reason)
  "mcfleet.agent.v1.Agent"  the agent's own API: SERVING as soon as the socket is up, so an
                            apply can tell the new binary works even while podman or a long
                            boot sequence is not ready
  "podman"                  the same answer as ""
  "boot"                    SERVING once the boot sequence finished with every stage healthy

Start-up order (an apply restarts the agent and waits for its health answer): the gRPC server
starts first, with only grpc and the stubs imported; the rest of the agent (the podman client,
the service models, the registry: ~2/3 of its import time) loads afterwards, module by module,
while the server already answers.  The agent API's health answers SERVING at once; Info, Facts and
every other call wait for that load (bounded by their deadline), so an apply that confirms an
agent after its Info has seen the whole agent load.  A load that fails stops the agent with
exit status 1 (systemd shows the crash; Info answers UNAVAILABLE with the reason meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from mcfleet.agent.events import BOOT_RETRY_S, EventLog
from mcfleet.agent.facts import bundle_sha256, node_info, process_age
from mcfleet.agent.proto import agent_pb2 as pb
from mcfleet.agent.proto import agent_pb2_grpc as pb_grpc
from mcfleet.agent.proto import health_pb2, health_pb2_grpc
from mcfleet.errors import InputError, McfleetError

if TYPE_CHECKING:  # loaded after the server serves (`AgentState.load`): see the module's docstring
    from mcfleet.agent.reconcile import Outcome, Reconciler

log = logging.getLogger("mcfleet.agent")
AGENT_SERVICE = "mcfleet.agent.v1.Agent"
Ctx = grpc.aio.ServicerContext[Any, Any]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class AgentConfig:
    socket: Path = Path("/srv/mcp/mcp-agent.sock")
    podman_url: str = "unix:///run/podman/podman.sock"
    registry: Path = Path("/srv/mcp/mcfleet-agent.db")
    users: list[str] = field(default_factory=lambda: ["mcp"])
    stage_timeout: float = 120.0
    stop_timeout: int = 10
    boot: bool = True
    boot_retry_s: float = BOOT_RETRY_S  # first wait before a failed boot is tried again (doubling); 0: never


# How long one podman reachability answer is reused, how long a caller waits for one, and how
# long Facts waits for the container list: all well inside the client's 10 s deadline.
PODMAN_CHECK_TTL_S = 2.0
PODMAN_PING_TIMEOUT_S = 5.0
FACTS_PODMAN_TIMEOUT_S = 5.0


class AgentNotLoaded(McfleetError):
    kind = "agent did not load"


# The rest of the agent, imported one after another on the event loop once the server serves (the
# loop answers between two of them).  Not on a thread: measured on a lab node, a thread importing
# beside grpc's poller made the agent ready later (Info 0.41-0.87 s vs 0.24-0.39 s after its start).
LOAD_ORDER = (
    "pydantic",
    "mcfleet.fleet.models",  # the service models (pydantic): ~1/3 of the agent's import time
    "requests",
    "podman",  # the podman client and its HTTP stack: ~1/4
    "mcfleet.agent.podman_ops",
    "mcfleet.agent.reconcile",
    "mcfleet.agent.registry",
)


@dataclass
class AgentState:
    config: AgentConfig
    events: EventLog
    started_at: float = field(default_factory=time.time)
    bundle_sha256: str = ""
    podman_reason: str = "podman not checked yet"
    podman_checked_at: float = 0.0
    # seconds from the process's start (PEX bootstrap included) to: "serving", "loaded"
    startup: dict[str, float] = field(default_factory=dict)
    # the modules of LOAD_ORDER already imported when the server started serving (none: it
    # answers before the heavy imports)
    loaded_when_serving: list[str] = field(default_factory=list)
    _core: asyncio.Future[Reconciler] | None = None
    _check: asyncio.Task[str] | None = None

    async def load(self) -> Reconciler:
        """The rest of the agent: its modules (with the bundle hashed on a thread meanwhile), then its parts."""
        core = self._core = asyncio.get_running_loop().create_future()
        try:
            hashed = asyncio.create_task(asyncio.to_thread(bundle_sha256))  # hashlib lets go of the GIL
            for module in LOAD_ORDER:
                await asyncio.sleep(0)  # an RPC that came in meanwhile is answered between two imports
                importlib.import_module(module)
            self.bundle_sha256 = await hashed
            from mcfleet.agent.podman_ops import Podman
            from mcfleet.agent.reconcile import Reconciler
            from mcfleet.agent.registry import Registry

            config, events = self.config, self.events
            podman = Podman(
                config.podman_url,
                stop_timeout=config.stop_timeout,
                notify=lambda message: events.add("podman-restart", message, error=True),
            )
            try:
                registry = Registry(config.registry)
            except BaseException:
                podman.close()
                raise
            rec = Reconciler(registry, podman, events, stage_timeout=config.stage_timeout)
        except BaseException as exc:
            core.set_exception(AgentNotLoaded(f"{type(exc).__name__}: {exc}"))
            core.exception()  # retrieved here: callers get it from `reconciler()`
            raise
        self.startup["loaded"] = process_age()
        core.set_result(rec)
        return rec

    async def reconciler(self) -> Reconciler:
        """The loaded agent (waits for `load`); AgentNotLoaded when it failed."""
        if self._core is None:
            raise AgentNotLoaded("the agent has not started loading")
        return await asyncio.shield(self._core)

    @property
    def loaded(self) -> Reconciler | None:
        core = self._core
        return core.result() if core is not None and core.done() and core.exception() is None else None

    async def health_reason(self) -> str:
        """'' while podman's API answers, else why not (cached for PODMAN_CHECK_TTL_S).

        One check runs at a time; a caller waits for it at most PODMAN_PING_TIMEOUT_S (a check
        that takes longer keeps running and updates the answer when it ends)."""
        if time.monotonic() - self.podman_checked_at < PODMAN_CHECK_TTL_S:
            return self.podman_reason
        rec = await self.reconciler()
        if self._check is None or self._check.done():
            self._check = asyncio.create_task(self._check_podman(rec))
        try:
            return await asyncio.wait_for(asyncio.shield(self._check), PODMAN_PING_TIMEOUT_S)
        except TimeoutError:
            return f"podman API at {rec.podman.url} did not answer within {PODMAN_PING_TIMEOUT_S:g} s"

    async def _check_podman(self, rec: Reconciler) -> str:
        podman = rec.podman
        reason = await podman.in_thread(podman.unreachable)
        if reason != self.podman_reason:
            self.events.add("not-serving" if reason else "serving", reason or f"podman API answers at {podman.url}",
                            error=bool(reason))  # fmt: skip
        self.podman_reason, self.podman_checked_at = reason, time.monotonic()
        return reason


async def _loaded(state: AgentState, context: Ctx) -> Reconciler:
    """The loaded agent for an RPC; the RPC ends UNAVAILABLE with the reason when the load failed."""
    try:
        return await state.reconciler()
    except AgentNotLoaded as exc:
        await context.abort(grpc.StatusCode.UNAVAILABLE, exc.message)
        raise  # not reached: abort raises


def _actions(outcome: Outcome) -> list[pb.Action]:
    return [pb.Action(**asdict(a)) for a in outcome.actions]


class HealthServicer(health_pb2_grpc.HealthServicer):
    def __init__(self, state: AgentState) -> None:
        self.state = state

    async def _status(self, service: str) -> int | None:
        """The agent's API serves as soon as the server runs (no wait for the load); the rest
        of the answers need the loaded agent (they wait for it)."""
        if service == AGENT_SERVICE:
            return SERVING
        if service in ("", "podman"):
            return NOT_SERVING if await self.state.health_reason() else SERVING
        if service == "boot":
            return SERVING if (await self.state.reconciler()).boot.state == "ok" else NOT_SERVING
        return None

    async def _answer(self, service: str, context: Ctx) -> int | None:
        try:
            return await self._status(service)
        except AgentNotLoaded as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, exc.message)
            raise  # not reached: abort raises

    async def Check(self, request: health_pb2.HealthCheckRequest, context: Ctx) -> health_pb2.HealthCheckResponse:
        status = await self._answer(request.service, context)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)  # type: ignore[arg-type]

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: Ctx
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        last: int | None = -1
        while True:
            status = await self._answer(request.service, context)
            if status != last:
                last = status
                yield health_pb2.HealthCheckResponse(
                    status=status if status is not None else health_pb2.HealthCheckResponse.SERVICE_UNKNOWN  # type: ignore[arg-type]
                )
            await asyncio.sleep(0.5)


def _busy(rec: Reconciler) -> dict[str, Any] | None:
    """The change of the containers under way (pb.Work's fields), or None."""
    work = rec.working
    if work is None:
        return None
    running_s = round(time.monotonic() - work.started, 1)
    return {
        "what": work.what,
        "services": list(work.services),
        "running_s": running_s,
        "waiting": rec.waiting,
        "failing": dict(rec.failing),
    }


class AgentServicer(pb_grpc.AgentServicer):
    def __init__(self, state: AgentState) -> None:
        self.state = state
        self._unfinished: set[asyncio.Task[Outcome]] = set()

    async def _to_the_end(self, work: Coroutine[Any, Any, Outcome]) -> Outcome:
        """Run a change of the containers to its end even when the caller goes away (apply
        interrupted, its SSH connection lost): grpc cancels the handler then, and a cancelled
        converge would stop amid a replace, leaving the old container set aside and stopped and the
        new one running unchecked.  Finished, a stage that does not get healthy puts back what it
        replaced, as when the caller waits; the answer is only dropped."""
        task = asyncio.ensure_future(work)
        self._unfinished.add(task)
        task.add_done_callback(self._unfinished.discard)
        return await asyncio.shield(task)

    def _info(self, rec: Reconciler, health_reason: str) -> pb.InfoResponse:
        info = node_info(self.state.config.users)
        answer = pb.InfoResponse(
            **{k: v for k, v in info.items() if k != "users"},
            users=[pb.PinnedUser(**u) for u in info["users"]],
            bundle_sha256=self.state.bundle_sha256,
            started_at=self.state.started_at,
            boot=pb.BootState(**asdict(rec.boot)),  # the same fields, one for one
            services=len(rec.registry.entries()),
            health_reason=health_reason,
        )
        busy = _busy(rec)
        if busy is not None:
            answer.busy.CopyFrom(pb.Work(**busy))
        return answer

    async def Info(self, request: pb.InfoRequest, context: Ctx) -> pb.InfoResponse:
        rec = await _loaded(self.state, context)
        return await asyncio.to_thread(self._info, rec, await self.state.health_reason())

    async def Facts(self, request: pb.FactsRequest, context: Ctx) -> pb.FactsResponse:
        rec = await _loaded(self.state, context)
        podman = rec.podman
        try:
            listed = await asyncio.wait_for(
                podman.in_thread(podman.list_managed, forwarders=True), FACTS_PODMAN_TIMEOUT_S
            )
            containers, podman_error = [asdict(m) for m in listed], ""
        except TimeoutError:
            containers = []
            podman_error = f"podman API at {podman.url} did not list the containers within {FACTS_PODMAN_TIMEOUT_S:g} s"
        except McfleetError as exc:  # a dead podman is a fact, not a failure of Facts: one line, no hint
            containers, podman_error = [], exc.message
        except Exception as exc:
            containers, podman_error = [], str(exc)
        checks: dict[str, str] | None = None
        if request.check_health and not podman_error:
            from mcfleet.agent.health import check_now  # loaded with the agent (`_load_modules`)

            running = {c["name"] for c in containers if c["state"] == "running"}
            checks = await check_now(rec.registry.entries(), running, podman)
        facts = {
            "info": node_info(self.state.config.users),
            "bundle_sha256": self.state.bundle_sha256,
            "started_at": self.state.started_at,
            "boot": asdict(rec.boot),
            "startup": {
                **{f"{k}_s": round(v, 3) for k, v in self.state.startup.items()},
                "loaded_when_serving": self.state.loaded_when_serving,
            },
            "registry": [
                {
                    "name": e.name,
                    "stage": e.service.stage.value,
                    "desired": e.desired,
                    "ports": e.ports,
                    "spec": e.service.model_dump(mode="json", by_alias=True, exclude={"files"}),
                }
                for e in rec.registry.entries()
            ],
            "containers": containers,
            # "error" set: the containers are unknown (not "none"); health says the same
            "podman": {"url": podman.url, "error": podman_error},
            "health": {"status": "NOT_SERVING" if podman_error else "SERVING", "reason": podman_error},
            "events": self.state.events.recent(request.events or 200),
            "busy": _busy(rec),
            **({"checks": checks} if checks is not None else {}),
        }
        return pb.FactsResponse(json=json.dumps(facts, sort_keys=True))

    async def ReconcileServices(self, request: pb.ReconcileRequest, context: Ctx) -> pb.ReconcileResponse:
        rec = await _loaded(self.state, context)
        from mcfleet.fleet.models import Service  # loaded with the agent (`_load_modules`)

        desired: list[tuple[Service, dict[str, int]]] = []
        for item in request.services:
            try:
                desired.append((Service.model_validate_json(item.spec_json), dict(item.ports)))
            except ValueError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad service spec: {exc}")
        outcome = await self._to_the_end(
            rec.reconcile(desired, prune=request.prune, stage_timeout=request.stage_timeout_s or None)
        )
        return pb.ReconcileResponse(
            ok=outcome.ok,
            error=outcome.error,
            actions=_actions(outcome),
            ports=[pb.ServicePorts(service=k, ports=v) for k, v in outcome.ports.items()],
            stages_healthy=outcome.stages_healthy,
        )

    async def _service_op(self, op: str, request: pb.ServiceRequest, context: Ctx) -> pb.ServiceResponse:
        rec = await _loaded(self.state, context)
        from mcfleet.agent.reconcile import UnknownService

        try:
            within = request.stage_timeout_s or None
            if op == "stop":
                outcome = await self._to_the_end(rec.stop_service(request.name))
            elif op == "start":
                outcome = await self._to_the_end(rec.start_service(request.name, stage_timeout=within))
            else:
                outcome = await self._to_the_end(rec.restart_service(request.name, stage_timeout=within))
        except UnknownService as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, exc.message)
        return pb.ServiceResponse(ok=outcome.ok, error=outcome.error, actions=_actions(outcome))

    async def StopService(self, request: pb.ServiceRequest, context: Ctx) -> pb.ServiceResponse:
        return await self._service_op("stop", request, context)

    async def StartService(self, request: pb.ServiceRequest, context: Ctx) -> pb.ServiceResponse:
        return await self._service_op("start", request, context)

    async def RestartService(self, request: pb.ServiceRequest, context: Ctx) -> pb.ServiceResponse:
        return await self._service_op("restart", request, context)

    async def Recover(self, request: pb.RecoverRequest, context: Ctx) -> pb.RecoverResponse:
        rec = await _loaded(self.state, context)
        outcome = await rec.recover(stage_timeout=request.stage_timeout_s or None)
        return pb.RecoverResponse(
            ok=outcome.ok, error=outcome.error, actions=_actions(outcome), stages_healthy=outcome.stages_healthy
        )


async def _start_server(state: AgentState) -> grpc.aio.Server:
    """The gRPC server, serving on the agent's socket (born 0660: the agent's user and group only)."""
    config = state.config
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(HealthServicer(state), server)
    pb_grpc.add_AgentServicer_to_server(AgentServicer(state), server)
    config.socket.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        config.socket.unlink()  # a stale socket from a previous run
    old_umask = os.umask(0o117)
    try:
        server.add_insecure_port(f"unix:{config.socket}")
        await server.start()
    finally:
        os.umask(old_umask)
    return server


async def serve(config: AgentConfig, stop: asyncio.Event | None = None) -> None:
    """Run the agent until SIGTERM/SIGINT (or `stop` is set)."""
    if len(str(config.socket)) > 100:
        raise InputError(
            f"socket path is too long for a unix socket ({len(str(config.socket))} chars)",
            location=str(config.socket),
            hint="use a shorter --socket path",
        )
    events = EventLog()
    state = AgentState(config, events)
    server = await _start_server(state)
    state.startup["serving"] = process_age()
    state.loaded_when_serving = [m for m in LOAD_ORDER if m in sys.modules]
    events.add("listening", f"mcfleet-agent serving on unix:{config.socket} (podman {config.podman_url}), "
                            f"{state.startup['serving']:.2f} s after its start")  # fmt: skip
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    load = asyncio.create_task(state.load())
    boot_task: asyncio.Task[Outcome] | None = None
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({load, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if load.done() and load.exception() is not None:
            failed = load.exception()
            events.add("load-failed", f"the agent did not load: {type(failed).__name__}: {failed}", error=True)
            raise AgentNotLoaded(f"{type(failed).__name__}: {failed}") from failed
        if load.done():
            events.add("loaded", f"agent loaded {state.startup['loaded']:.2f} s after its start")
            if config.boot:
                boot_task = asyncio.create_task(load.result().boot_until_healthy(retry_s=config.boot_retry_s))
        await stopped
    finally:
        events.add("stopping", "signal received, shutting down" if stop.is_set() else "shutting down")
        stopped.cancel()
        load.cancel()  # a load still running when asked to stop (its threads finish on their own)
        if boot_task is not None and not boot_task.done():
            boot_task.cancel()
        await server.stop(grace=2)
        with contextlib.suppress(FileNotFoundError):
            config.socket.unlink()
        rec = state.loaded
        if rec is not None:
            rec.podman.close()
            rec.registry.close()
