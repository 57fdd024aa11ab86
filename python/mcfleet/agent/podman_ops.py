"""podman through podman-py, reduced to what the agent needs.

podman-py is blocking (requests over the podman API socket); async callers run these
methods on the agent's podman threads (`await podman.in_thread(podman.list_managed)`), so a
slow podman never holds up the threads Info and health use.  Every call is bounded: quick
calls (list, inspect, create, start) by `quick_timeout`, stop/remove by the stop timeout
plus that, a pull by PULL_TIMEOUT_S.  Only containers labelled `io.mcfleet.managed=true`
are ever listed, changed or removed: anything else on the node is not ours.

A stale API service (it answers its ping, but its storage was wiped under it, or its calls
no longer answer: what `podman system reset` leaves behind) is restarted once
(`podman_service.restart_user_service`) and the call tried again on a fresh connection.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from podman import PodmanClient
from podman.errors import APIError, NotFound
from requests.exceptions import ReadTimeout

from mcfleet.agent.crash_loop import CRASH_LOOP_WITHIN_S
from mcfleet.agent.listeners import listening_ports, published_ports, unforwarded
from mcfleet.agent.podman_service import CONFIRM_S, restart_user_service, stale_namespace, user_runtime_dir
from mcfleet.agent.spec import LABEL_MANAGED, ContainerSpec
from mcfleet.errors import PeerError

P = ParamSpec("P")
T = TypeVar("T")
QUICK_TIMEOUT_S = 20.0
PULL_TIMEOUT_S = 600.0
# What a podman API service says when its storage was deleted under it.
LOST_STORAGE = ("opening database", "bolt_state.db", "layer not known")


@dataclass(frozen=True)
class Managed:
    name: str
    state: str  # running | exited | created | ...
    labels: dict[str, str]
    image: str
    restarts: int = 0  # by podman's policy since its last deliberate start (counted only if up_s is short)
    exit_code: int = 0  # of its last run
    up_s: float | None = None  # seconds since its last start, by the node's clock (None: never started)
    # published tcp ports ("address:port") nothing listens on while it runs: rootless podman's forwarder
    # is gone (only looked for with our own rootless podman)
    unforwarded: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)  # "tcp/8080": the host ports it publishes


# podman reads a container process's /proc/PID/cgroup to inspect or remove it, and a process that
# exits meanwhile (a container being restarted: ~16 times a second for one that exits at once) fails
# the call with "read /proc/PID/cgroup: no such process"; asked again, it answers.
INSPECT_RACE_TRIES = 5
PROCESS_RACE = "no such process"


@dataclass(frozen=True)
class RunState:
    """A container's state as podman inspects it."""

    status: str  # running | exited | stopped | created | missing | ...
    exit_code: int = 0  # of its last run
    restarts: int = 0  # by its restart policy, since it was created
    started_at: str = ""  # when its current (or last) run began, as podman says: each run has its own


class Podman:
    def __init__(
        self,
        url: str,
        *,
        stop_timeout: int = 10,
        quick_timeout: float = QUICK_TIMEOUT_S,
        notify: Callable[[str], object] | None = None,
    ) -> None:
        self.url = url if "://" in url else f"unix://{url}"
        self.stop_timeout = stop_timeout
        self.quick_timeout = quick_timeout
        self.notify = notify or (lambda _message: None)
        self.restarts = 0  # how often the API service was restarted: a call retries only after one
        self._restart_lock = threading.Lock()
        self._threads = ThreadPoolExecutor(max_workers=8, thread_name_prefix="podman")
        self._open()

    def _open(self) -> None:
        self._client = PodmanClient(base_url=self.url, timeout=self.quick_timeout)
        self._stopping = PodmanClient(base_url=self.url, timeout=self.stop_timeout + self.quick_timeout)
        self._pulling = PodmanClient(base_url=self.url, timeout=PULL_TIMEOUT_S)

    async def in_thread(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run one of these blocking methods on the podman threads."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, lambda: fn(*args, **kwargs))

    def _fail(self, what: str, exc: Exception) -> PeerError:
        # podman answered (an APIError, which requests makes an OSError too): its error says what is wrong
        unreachable = isinstance(exc, OSError) and not isinstance(exc, APIError)
        return PeerError(
            f"podman {what} failed: {_root_cause(exc) if isinstance(exc, OSError) else exc}",
            location=self.url,
            hint="is the podman API service running (podman system service) and the socket reachable?"
            if unreachable
            else None,
        )

    def _call(self, what: str, call: Callable[[], T]) -> T:
        """One API call; on a stale service, restart it and try once more.  NotFound passes through."""
        generation = self.restarts
        try:
            return call()
        except NotFound:
            raise
        except (APIError, OSError) as exc:
            if not self._restart_if_stale(exc, generation):
                raise self._fail(what, exc) from exc
        try:
            return call()
        except NotFound:
            raise
        except (APIError, OSError) as exc:
            raise self._fail(what, exc) from exc

    def stale_reason(self, exc: BaseException) -> str:
        """Why `exc` shows a stale API service ('' when it does not)."""
        by_namespace = stale_namespace(self.url)
        if by_namespace:
            return by_namespace
        if any(sign in f"{exc} {_root_cause(exc)}" for sign in LOST_STORAGE):
            return f"podman's API service lost its storage (wiped under it: podman system reset?): {_root_cause(exc)}"
        if isinstance(exc, ReadTimeout):
            try:
                answers = bool(self._client.ping())
            except (APIError, OSError):
                answers = False
            if answers:
                return f"podman's API service answers its ping but not a call within {self.quick_timeout:g} s"
        return ""

    def heal(self) -> None:
        """Restart the API service now if it is stale by its namespace (cheap: reads /proc)."""
        if stale_namespace(self.url):
            with self._restart_lock:
                time.sleep(CONFIRM_S)  # still so a moment later: not a service caught starting
                reason = stale_namespace(self.url)  # (nor one another thread restarted meanwhile)
                if reason:
                    self._restart(reason)

    def _restart_if_stale(self, exc: BaseException, generation: int) -> bool:
        """True when the call is worth one more try: the service was restarted since it began."""
        reason = self.stale_reason(exc)
        if not reason:
            return False
        with self._restart_lock:
            if self.restarts != generation:
                return True  # another call restarted it meanwhile: try the fresh service
            return self._restart(reason)

    def _restart(self, reason: str) -> bool:
        """Restart the API service (the caller holds the restart lock)."""
        done = restart_user_service(self.url)
        if not done:
            self.notify(f"{reason}; not restarted (not this user's rootless podman socket)")
            return False
        for client in (self._client, self._stopping, self._pulling):
            client.close()  # type: ignore[no-untyped-call]
        self._open()
        self.restarts += 1
        self.notify(f"{reason}: {done}")
        return True

    @property
    def rootless(self) -> bool:
        """Whether this is our own rootless podman (its ports are published by a forwarder process)."""
        return os.getuid() != 0 and user_runtime_dir(self.url) is not None

    def ping(self) -> bool:
        return not self.unreachable()

    def unreachable(self) -> str:
        """'' when podman's API answers its ping and a container list, else why not (one line, for
        health and Facts).  The list matters: a stale service answers the ping alone.

        The socket is connected to afresh first: the client keeps its connection to the service
        alive, and a worker of a stopped `podman.service` (its unit kills the main process only)
        answers on that old connection after the socket itself is gone."""
        refused = _socket_refuses(self.url)
        if refused:
            return f"podman API not reachable at {self.url}: {refused}"
        try:
            if not self._client.ping():
                return f"podman API at {self.url} did not answer its ping"
        except Exception as exc:
            return f"podman API not reachable at {self.url}: {_root_cause(exc)}"
        try:
            self.list_managed()
        except PeerError as exc:
            return exc.message
        return ""

    def list_managed(self, *, forwarders: bool = False) -> list[Managed]:
        """Our containers; with `forwarders` (Facts, converge), also the published ports of each running one
        that nothing listens on (one read of the node's socket table, our own rootless podman only)."""
        self.heal()  # every read of the node's containers starts with it (Facts, health, converge)
        found = self._call(
            "list", lambda: self._client.containers.list(all=True, filters={"label": f"{LABEL_MANAGED}=true"})
        )
        result = []
        now = time.time()
        listening = listening_ports() if forwarders and self.rootless else None
        for item in found:
            attrs: dict[str, Any] = item.attrs
            if (attrs.get("Labels") or {}).get(LABEL_MANAGED) != "true":
                continue  # belt and braces: never touch a container that is not ours
            raw_state = attrs.get("State")
            state = raw_state if isinstance(raw_state, str) else str((raw_state or {}).get("Status", "unknown"))
            name = str((attrs.get("Names") or [item.name])[0]).lstrip("/")
            started, exit_code = attrs.get("StartedAt"), attrs.get("ExitCode")
            up_s = max(0.0, now - started) if isinstance(started, int | float) and started > 0 else None
            result.append(
                Managed(
                    name=name,
                    state=state,
                    labels=dict(attrs.get("Labels") or {}),
                    image=str(attrs.get("Image", "")),
                    # the list does not carry the restart count: inspected only for a recent start
                    restarts=self._restarts(name) if up_s is not None and up_s < CRASH_LOOP_WITHIN_S else 0,
                    exit_code=exit_code if isinstance(exit_code, int) else 0,
                    up_s=None if up_s is None else round(up_s, 1),
                    unforwarded=unforwarded(attrs.get("Ports") or [], listening)
                    if listening is not None and state == "running"
                    else [],
                    published=published_ports(attrs.get("Ports") or []),
                )
            )
        return result

    def _restarts(self, name: str) -> int:
        try:
            return self.run_state(name).restarts
        except PeerError:  # removed meanwhile, or podman's answer unreadable: no loop seen
            return 0

    def ensure_image(self, image: str) -> None:
        if not self._call(f"inspect of {image}", lambda: self._client.images.exists(image)):
            self._call(f"pull of {image}", lambda: self._pull(image))

    def _pull(self, image: str) -> None:
        """podman's pull endpoint answers 200 and then streams the pull; a failed pull is an `error` line
        in that stream (podman-py then returns an empty image, and the create after it failed with
        "image not known"): read the stream and fail with podman's own reason."""
        lines: Iterable[object] = self._pulling.images.pull(image, stream=True, decode=True)  # type: ignore[assignment]
        errors = [str(line["error"]) for line in lines if isinstance(line, dict) and line.get("error")]
        if errors:
            raise PeerError(
                f"podman could not pull {image}: {errors[-1].strip()}",
                location=self.url,
                hint="check the image's name and tag, and that the node reaches its registry",
            )

    def create(self, spec: ContainerSpec) -> None:
        ports: dict[str, list[tuple[str, int]]] = {}
        for port in spec.ports:
            ports.setdefault(f"{port.container_port}/{port.protocol}", []).append((port.host_ip, port.host_port))
        volumes: dict[str, dict[str, str]] = {}
        for vol in spec.volumes:
            if vol.source.startswith("/"):
                # Data directories are created when missing and never removed (volumes untouched).
                _data_dir(spec.name, vol.source)
            volumes[vol.source] = {"bind": vol.target, "mode": vol.mode}
        kwargs: dict[str, Any] = {
            "name": spec.name,
            "command": spec.command or None,
            "environment": spec.env,
            "ports": ports,
            "volumes": volumes,
            "labels": spec.labels,
            # --init forwards SIGTERM to the real process: services stop promptly.
            "init": True,
            "stop_timeout": self.stop_timeout,
        }
        if spec.user:
            kwargs["user"] = spec.user
        if spec.restart:
            kwargs["restart_policy"] = {"Name": spec.restart}
        if spec.network:
            kwargs["network_mode"] = spec.network
        self._call(f"create of {spec.name}", lambda: self._stopping.containers.create(spec.image, **kwargs))

    def rename(self, name: str, new_name: str) -> None:
        self._call(f"rename of {name}", lambda: self._client.containers.get(name).rename(new_name))

    def start(self, name: str) -> None:
        self._call(f"start of {name}", lambda: self._stopping.containers.get(name).start())

    def stop(self, name: str) -> None:
        try:
            # ignore: one already stopped is what was asked (podman answers 304, which podman-py raises
            # as an error "0" without it; hit when a container podman restarts in a loop is between runs)
            self._past_exits(
                f"stop of {name}",
                lambda: self._stopping.containers.get(name).stop(timeout=self.stop_timeout, ignore=True),
            )
        except NotFound:
            return

    def _past_exits(self, what: str, call: Callable[[], T]) -> T:
        """`_call`, asked again (up to INSPECT_RACE_TRIES times) while podman trips over a container
        process that exits meanwhile.  NotFound passes through."""
        for _ in range(INSPECT_RACE_TRIES - 1):
            try:
                return self._call(what, call)
            except PeerError as exc:
                if PROCESS_RACE not in exc.message:
                    raise
                time.sleep(0.05)
        return self._call(what, call)

    def remove(self, name: str) -> None:
        """Remove the container only; its volumes (host dirs, named volumes) stay.  A container podman
        restarts in a loop (the replacement a failed deploy removes to put the old one back) is
        removed all the same: when its exiting process trips the call, it is asked again."""
        try:
            self._past_exits(
                f"remove of {name}", lambda: self._stopping.containers.get(name).remove(force=True, v=False)
            )
        except NotFound:
            return

    def state(self, name: str) -> str:
        return self.run_state(name).status

    def run_state(self, name: str) -> RunState:
        try:
            container = self._past_exits(f"inspect of {name}", lambda: self._client.containers.get(name))
        except NotFound:
            return RunState("missing")
        state = container.attrs.get("State")
        if not isinstance(state, dict):
            return RunState(str(state))
        restarts = container.attrs.get("RestartCount")
        return RunState(
            str(state.get("Status", "unknown")),
            int(state.get("ExitCode") or 0),
            restarts if isinstance(restarts, int) else 0,
            str(state.get("StartedAt") or ""),
        )

    def exec(self, name: str, command: list[str]) -> tuple[int, str]:
        code, output = self._call(
            f"exec in {name}", lambda: self._stopping.containers.get(name).exec_run(command, demux=True)
        )
        out, err = output if isinstance(output, tuple) else (output, None)
        text = b"".join(x for x in (out, err) if x).decode(errors="replace")
        return int(code or 0), text

    def close(self) -> None:
        for client in (self._client, self._stopping, self._pulling):
            client.close()  # type: ignore[no-untyped-call]
        self._threads.shutdown(wait=False, cancel_futures=True)


def _data_dir(container: str, path: str) -> None:
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PeerError(
            f"cannot create the data directory {path} of {container}: {exc.strerror or exc}",
            hint="a volume's source must be a directory, or a path where one can be made",
        ) from exc


def _socket_refuses(url: str) -> str:
    """'' when a new connection to a unix-socket URL is accepted (or the URL is not a unix socket)."""
    if not url.startswith("unix://"):
        return ""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(url.removeprefix("unix://"))
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    finally:
        probe.close()
    return ""


def _root_cause(exc: BaseException) -> str:
    """The innermost error of a requests/urllib3 chain (e.g. 'No such file or directory'),
    which says more than the wrapper's 'Connection aborted' with its nested reprs."""
    seen = exc
    while True:
        inner = seen.__cause__ or seen.__context__
        if inner is None or inner is seen:
            break
        seen = inner
    text = getattr(seen, "strerror", None) or str(seen) or type(seen).__name__
    return str(text).splitlines()[0][:200]
