"""podman through podman-py, reduced to what the agent needs.

podman-py is blocking (requests over the podman API socket); callers run these methods in
a thread (`asyncio.to_thread`).  Only containers labelled `io.mcfleet.managed=true` are
ever listed, changed or removed: anything else on the node is not ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podman import PodmanClient
from podman.errors import APIError, NotFound

from mcfleet.agent.spec import LABEL_MANAGED, ContainerSpec
from mcfleet.errors import PeerError


@dataclass(frozen=True)
class Managed:
    name: str
    state: str  # running | exited | created | ...
    labels: dict[str, str]
    image: str


class Podman:
    def __init__(self, url: str, *, stop_timeout: int = 10) -> None:
        self.url = url if "://" in url else f"unix://{url}"
        self.stop_timeout = stop_timeout
        self._client = PodmanClient(base_url=self.url, timeout=60)

    def _fail(self, what: str, exc: Exception) -> PeerError:
        return PeerError(
            f"podman {what} failed: {exc}",
            location=self.url,
            hint="is the podman API service running (podman system service) and the socket reachable?",
        )

    def ping(self) -> bool:
        return not self.unreachable()

    def unreachable(self) -> str:
        """'' when the podman API answers its ping, else why not (one line, for health and Facts)."""
        try:
            if self._client.ping():
                return ""
            return f"podman API at {self.url} did not answer its ping"
        except Exception as exc:
            return f"podman API not reachable at {self.url}: {_root_cause(exc)}"

    def list_managed(self) -> list[Managed]:
        try:
            found = self._client.containers.list(all=True, filters={"label": f"{LABEL_MANAGED}=true"})
        except (APIError, OSError) as exc:
            raise self._fail("list", exc) from exc
        result = []
        for item in found:
            attrs: dict[str, Any] = item.attrs
            if (attrs.get("Labels") or {}).get(LABEL_MANAGED) != "true":
                continue  # belt and braces: never touch a container that is not ours
            state = attrs.get("State")
            names = attrs.get("Names") or [item.name]
            result.append(
                Managed(
                    name=str(names[0]).lstrip("/"),
                    state=state if isinstance(state, str) else str((state or {}).get("Status", "unknown")),
                    labels=dict(attrs.get("Labels") or {}),
                    image=str(attrs.get("Image", "")),
                )
            )
        return result

    def ensure_image(self, image: str) -> None:
        try:
            if not self._client.images.exists(image):
                self._client.images.pull(image)
        except (APIError, OSError) as exc:
            raise self._fail(f"pull of {image}", exc) from exc

    def create(self, spec: ContainerSpec) -> None:
        ports: dict[str, list[tuple[str, int]]] = {}
        for port in spec.ports:
            ports.setdefault(f"{port.container_port}/{port.protocol}", []).append((port.host_ip, port.host_port))
        volumes: dict[str, dict[str, str]] = {}
        for vol in spec.volumes:
            if vol.source.startswith("/"):
                # Data directories are created when missing and never removed (volumes untouched).
                Path(vol.source).mkdir(parents=True, exist_ok=True)
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
        try:
            self._client.containers.create(spec.image, **kwargs)
        except (APIError, OSError) as exc:
            raise self._fail(f"create of {spec.name}", exc) from exc

    def start(self, name: str) -> None:
        try:
            self._client.containers.get(name).start()
        except (APIError, OSError) as exc:
            raise self._fail(f"start of {name}", exc) from exc

    def stop(self, name: str) -> None:
        try:
            self._client.containers.get(name).stop(timeout=self.stop_timeout)
        except NotFound:
            return
        except (APIError, OSError) as exc:
            raise self._fail(f"stop of {name}", exc) from exc

    def restart(self, name: str) -> None:
        try:
            self._client.containers.get(name).restart(timeout=self.stop_timeout)
        except (APIError, OSError) as exc:
            raise self._fail(f"restart of {name}", exc) from exc

    def remove(self, name: str) -> None:
        """Remove the container only; its volumes (host dirs, named volumes) stay."""
        try:
            self._client.containers.get(name).remove(force=True, v=False)
        except NotFound:
            return
        except (APIError, OSError) as exc:
            raise self._fail(f"remove of {name}", exc) from exc

    def state(self, name: str) -> str:
        try:
            container = self._client.containers.get(name)
        except NotFound:
            return "missing"
        except (APIError, OSError) as exc:
            raise self._fail(f"inspect of {name}", exc) from exc
        state = container.attrs.get("State")
        return str(state.get("Status", "unknown")) if isinstance(state, dict) else str(state)

    def exec(self, name: str, command: list[str]) -> tuple[int, str]:
        try:
            code, output = self._client.containers.get(name).exec_run(command, demux=True)
        except (APIError, OSError) as exc:
            raise self._fail(f"exec in {name}", exc) from exc
        out, err = output if isinstance(output, tuple) else (output, None)
        text = b"".join(x for x in (out, err) if x).decode(errors="replace")
        return int(code or 0), text

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


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
