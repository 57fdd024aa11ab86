"""Containers on a lab node: podman in the node's namespaces with the node's own storage."""

from __future__ import annotations

import urllib.request

import pytest

from tests.fixtures_lab import LabFleet, PodmanNode

pytestmark = pytest.mark.lab


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def test_container_via_the_nodes_podman_api_is_reachable_on_the_node_address(podman_node: PodmanNode) -> None:
    from podman import PodmanClient

    node = podman_node.node
    with PodmanClient(base_url=podman_node.url) as client:
        assert any(podman_node.image in (img.tags or []) for img in client.images.list())
        container = client.containers.create(
            podman_node.image,
            command=["httpd", "-f", "-p", "8080", "-h", "/etc"],
            ports={"8080/tcp": (node.address, 18081)},
            labels={"mcfleet.test": "lab"},
            name="lab-api-web",
        )
        try:
            container.start()
            body = ""
            for _ in range(100):
                try:
                    body = _get(f"http://{node.address}:18081/passwd")
                    break
                except OSError:
                    import time

                    time.sleep(0.05)
            assert body.startswith("root:x:0:0")
        finally:
            container.stop(timeout=0)
            container.remove(force=True)


def test_podman_over_the_node_uses_the_nodes_own_storage(lab_fleet: LabFleet) -> None:
    first, second = lab_fleet.nodes[0], lab_fleet.nodes[1]
    root_first = lab_fleet.exec_in(first, ["podman", "info", "--format", "{{.Store.GraphRoot}}"]).stdout.strip()
    root_second = lab_fleet.exec_in(second, ["podman", "info", "--format", "{{.Store.GraphRoot}}"]).stdout.strip()
    assert root_first.startswith(first.dir)
    assert root_second.startswith(second.dir)
    out = lab_fleet.exec_in(second, ["podman", "run", "--rm", "localhost/mcfleet-bb:test", "hostname"])
    assert out.returncode == 0
