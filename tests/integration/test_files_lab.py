"""A service's declared files on a systemd node with rootless podman: written before its containers
start, a template change rewrites the file and restarts that service's containers only.

Logins (the real fleet is reached as kyle with sudo or doas): the template test runs as root and as
kyle with sudo, the secret test on one node reached as kyle with doas (it gets the secret) and one
as root, the snapshot test as root and as kyle with doas.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from mcfleet.lab.images import START
from mcfleet.lab.login import Login
from mcfleet.lab.peers.registry import RegistryInfo
from tests.integration.apply_lab import (  # noqa: F401
    MakeNodes,
    Nodes,
    agent_bundle_fixture,
    cli,
    make_nodes_fixture,
    mcfleet_argv,
)

pytestmark = [pytest.mark.lab, pytest.mark.full, pytest.mark.slow]

AS_MCP = "cd / && runuser -u mcp -- env XDG_RUNTIME_DIR=/run/user/850"


def _started(fleet: Nodes, name: str, container: str) -> str:
    out = fleet.sh(name, f"{AS_MCP} podman inspect --format '{{{{.State.StartedAt}}}}' {container}")
    return out.stdout.strip()


def _apply(root: str, bundle: Path) -> None:
    run = cli("apply", "-C", root, "--yes", "--bundle", str(bundle), "--json", timeout=900)
    assert run.code == 0, run.why


@pytest.mark.parametrize("login", ["root", "sudo"])
def test_template_file_is_deployed_and_a_change_restarts_only_its_service(
    make_nodes: MakeNodes, agent_bundle: Path, registry: RegistryInfo, login: Login
) -> None:
    fleet = make_nodes(1, f"files{login[0]}", login=login)
    name = fleet.names[0]
    root = fleet.lab.write_fleet(fleet.fleet_dir, nodes=[name], services=True)
    template = root / "files" / "hello.conf"
    template.parent.mkdir(parents=True, exist_ok=True)
    template.write_text("listen {{ address }}:{{ port.hello/0 }}\nversion 1\n")
    svc_path = root / "hosts" / name / "services" / "hello.json"
    svc = json.loads(svc_path.read_text())
    svc["description"] = "files lab test"  # no longer the lab's demo file: `lab` keeps its hands off it
    svc["files"] = [{"path": "hello.conf", "source": "files/hello.conf", "template": True, "mode": "0640"}]
    # hello reads its file: it starts only when the file has a version line (a config it can reject), and its
    # health check is tcp (through rootless podman's port forwarder, which accepts for a stopped container)
    component = svc["components"][0]
    component["volumes"] = ["/srv/hello:/conf:ro"]
    component["cmd"] = ["sh", "-c", f"grep -q '^version' /conf/hello.conf || exit 1; {START}"]
    component["health"] = {"kind": "tcp", "port": 8080, "timeout_s": 2}
    svc_path.write_text(json.dumps(svc))

    plan = cli("plan", "-C", str(root), "--json")
    creates = [a for a in json.loads(plan.stdout)["actions"] if a["subject"] == "file /srv/hello/hello.conf"]
    assert [a["kind"] for a in creates] == ["create"], plan.stdout[-2000:]

    _apply(str(root), agent_bundle)
    conf = fleet.sh(name, "cat /srv/hello/hello.conf").stdout
    port = conf.split(":")[-1].split()[0]
    assert conf == f"listen {fleet.nodes[0].address}:{port}\nversion 1\n"
    assert port.isdigit() and int(port) > 0
    assert fleet.sh(name, "stat -c '%U %G %a' /srv/hello/hello.conf").stdout.split() == ["mcp", "mcp", "640"]
    hello, db = _started(fleet, name, "hello"), _started(fleet, name, "db")

    template.write_text("listen {{ address }}:{{ port.hello/0 }}\nversion 2\n")
    plan = cli("plan", "-C", str(root))
    assert "~ file /srv/hello/hello.conf" in plan.stdout and "+version 2" in plan.stdout, plan.stdout
    _apply(str(root), agent_bundle)
    assert fleet.sh(name, "cat /srv/hello/hello.conf").stdout.endswith("version 2\n")
    assert _started(fleet, name, "hello") != hello  # restarted: its file changed
    assert _started(fleet, name, "db") == db  # untouched
    again = cli("plan", "-C", str(root), "--detailed-exitcode")
    assert again.code == 0, again.stdout
    assert fleet.temp_files(name) == []
    a_file_the_service_rejects_is_put_back(fleet, name, root, template, agent_bundle, port=int(port))
    an_image_and_the_file_it_needs_change_together(fleet, name, root, template, agent_bundle, port=int(port))


def an_image_and_the_file_it_needs_change_together(
    fleet: Nodes, name: str, root: Path, template: Path, agent_bundle: Path, *, port: int
) -> None:
    """A new image that needs a new file, the old image rejecting it: the files phase leaves hello to the
    deploy, which starts the new container on the new file (was: the files phase restarted the old image
    on the new file, that failed, and the deploy never ran: the change could not be applied).  Then the
    same with a new container that does not get healthy: the agent puts the old one back, and its file
    goes back with it."""
    svc_path = root / "hosts" / name / "services" / "hello.json"
    svc = json.loads(svc_path.read_text())
    component = svc["components"][0]
    old_image = component["image"]

    def change(image: str, needs: str) -> None:
        component["image"] = image
        component["cmd"] = ["sh", "-c", f'grep -qx "needs $VERSION" /conf/hello.conf || exit 1; {START}']
        svc_path.write_text(json.dumps(svc))
        template.write_text(f"listen {{{{ address }}}}:{{{{ port.hello/0 }}}}\n{needs}\n")

    change(old_image.replace(":1", ":2"), "needs 2")
    run = cli("apply", "-C", str(root), "--yes", "--bundle", str(agent_bundle), "--json", timeout=900)
    assert run.code == 0, run.why
    assert run.phase(name, "files")["message"] == "wrote /srv/hello/hello.conf", run.phase(name, "files")
    assert fleet.sh(name, f"curl -sf http://127.0.0.1:{port}/").stdout.startswith("hello 2 port=8080")

    change(old_image, "needs 9")  # hello:1 needs "needs 1": its container keeps stopping
    run = cli("apply", "-C", str(root), "--yes", "--bundle", str(agent_bundle), "--json", timeout=900)
    assert run.code != 0, run.why
    failed = run.phase(name, "deploy")
    assert "hello keeps running on its previous definition" in failed["message"], failed
    assert "; their previous files put back (/srv/hello/hello.conf)" in failed["message"], failed
    assert fleet.sh(name, "cat /srv/hello/hello.conf").stdout.endswith("needs 2\n")
    assert fleet.sh(name, f"curl -sf http://127.0.0.1:{port}/").stdout.startswith("hello 2 port=8080")
    assert fleet.sh(name, "ls /var/lib/mcfleet/").stdout.count("previous.") == 0  # the copies are gone


def a_file_the_service_rejects_is_put_back(
    fleet: Nodes, name: str, root: Path, template: Path, agent_bundle: Path, *, port: int
) -> None:
    """A new file hello cannot start with: apply fails within seconds, hello gets its previous file back
    (content, owner, mode) and runs on it (was: "restarted hello" reported as a success while podman
    restarted it in a loop, hello down with the bad file until someone looked)."""
    template.write_text("broken\n")
    plan = cli("plan", "-C", str(root))
    assert "content changed; hello restarts on it" in plan.stdout, plan.stdout
    began = time.monotonic()
    run = cli("apply", "-C", str(root), "--yes", "--bundle", str(agent_bundle), "--json", timeout=900)
    took = time.monotonic() - began
    assert run.code != 0, run.why
    failed = run.phase(name, "files")
    assert failed["status"] == "failed", failed
    assert failed["message"].startswith("hello did not get healthy after its files changed: hello cannot get "
                                        "healthy: its container keeps stopping (restarted "), failed  # fmt: skip
    assert failed["message"].endswith(f"; its previous /srv/hello/hello.conf put back, and hello runs on it "
                                      f"(see `mcfleet logs {name} hello`)"), failed  # fmt: skip
    assert took < 60, took
    assert fleet.sh(name, "cat /srv/hello/hello.conf").stdout.endswith("version 2\n")
    assert fleet.sh(name, "stat -c '%U %G %a' /srv/hello/hello.conf").stdout.split() == ["mcp", "mcp", "640"]
    assert fleet.sh(name, f"curl -sf http://127.0.0.1:{port}/").stdout.startswith("hello 1 port=8080")
    assert fleet.sh(name, "ls /var/lib/mcfleet/").stdout.count("previous.") == 0  # its copy is gone
    replan = cli("plan", "-C", str(root))
    assert "~ file /srv/hello/hello.conf" in replan.stdout and "+broken" in replan.stdout, replan.stdout


POISON = "mcfleet-secret-poison-5d0c1e9a7b"


def _secret_fleet(fleet: Nodes, tmp_path: Path) -> tuple[Path, Path]:
    """Both nodes with the demo services, an operator key, and hello (on the first) using secret hello-token."""
    import pyrage  # type: ignore[import-untyped]

    root = fleet.lab.write_fleet(fleet.fleet_dir, nodes=fleet.names, services=True)
    operator = pyrage.x25519.Identity.generate()
    ident = tmp_path / "operator.key"
    ident.write_text(f"{operator}\n")
    ident.chmod(0o600)  # an identity others can read is refused
    data = json.loads((root / "fleet.json").read_text())
    data["secret_recipients"] = [str(operator.to_public())]
    (root / "fleet.json").write_text(json.dumps(data))
    svc_path = root / "hosts" / fleet.names[0] / "services" / "hello.json"
    svc = json.loads(svc_path.read_text())
    svc["description"] = "secret lab test"
    svc["files"] = [{"path": "token", "secret": "hello-token", "mode": "0600"}]
    svc_path.write_text(json.dumps(svc))
    return root, ident


def test_a_secret_reaches_only_its_node_as_0600_mcp_and_never_any_output(
    make_nodes: MakeNodes, agent_bundle: Path, registry: RegistryInfo, tmp_path: Path
) -> None:
    from tests.integration.test_secret_poison_lab import run_sampling_ps
    from tests.secret_poison import find_leaks, secret_needles, tree_leaks

    fleet = make_nodes(2, "secret", login=["doas", "root"])  # the secret's node is reached as kyle with doas
    first, second = fleet.names
    root, ident = _secret_fleet(fleet, tmp_path)
    env = {"MCFLEET_AGE_IDENTITY": str(ident)}

    invalid = cli("validate", "-C", str(root), env=env)
    assert invalid.code == 2 and "secret-recipient-missing" in invalid.stdout, invalid.stdout + invalid.stderr
    value = tmp_path / "value.txt"
    value.write_text(POISON)
    made = cli("secret", "set", "hello-token", "--from", str(value), "-C", str(root), env=env)
    assert made.code == 0, made.stderr
    value.unlink()
    assert cli("validate", "-C", str(root), env=env).code == 0
    recipients = (root / "secrets" / "hello-token.recipients").read_text()
    assert fleet.nodes[0].host_key in recipients and fleet.nodes[1].host_key not in recipients

    plan_file = tmp_path / "plan.json"
    planned = cli("plan", "-C", str(root), "-o", str(plan_file), env=env)
    assert planned.code == 0, planned.stdout + planned.stderr
    assert "+ file /srv/hello/token" in planned.stdout
    os.environ["MCFLEET_AGE_IDENTITY"] = str(ident)  # run_sampling_ps runs with this process's environment
    try:
        said, ps = run_sampling_ps(
            [*mcfleet_argv(), "-C", str(root), "apply", "--yes", "--json", "--bundle", str(agent_bundle)], root
        )
        needles = secret_needles(root)
    finally:
        del os.environ["MCFLEET_AGE_IDENTITY"]
    # the service's secret, plus whatever provider secrets the session's lab fleet names (TSIG, ACME
    # account key once Knot/Pebble run): every one of them is searched for below
    assert needles["secrets/hello-token.age"] == POISON
    assert set(needles) - {"secrets/hello-token.age"} <= {
        "fleet.json#/providers/dns/key_file",
        "fleet.json#/providers/cert/account_key_file",
    }, needles
    assert '"type": "summary", "ok": true' in said, said[-3000:]

    assert fleet.sh(first, "stat -c '%U %G %a' /srv/hello/token").stdout.split() == ["mcp", "mcp", "600"]
    assert fleet.sh(first, "cat /srv/hello/token").stdout == POISON
    assert fleet.sh(first, "stat -c '%a' /srv/hello").stdout.strip() == "750"  # never a world-readable folder
    assert fleet.sh(second, "ls /srv/hello/token", check=False).returncode != 0
    elsewhere = fleet.sh(second, f"grep -rl {POISON} /srv /var/lib/mcfleet /root /home /tmp", check=False)
    assert elsewhere.stdout == ""
    _drift_checks_without_the_identity(fleet, root, env, tmp_path / "not-an-operator.key", agent_bundle)

    sources = {"apply output": said, "ps during apply": ps, "plan": planned.stdout, "plan file": plan_file.read_text()}
    for name in fleet.names:
        logs = fleet.sh(name, "journalctl -b --no-pager; cat /var/lib/mcfleet/manifest.json", check=False)
        sources[f"{name}: journal and manifest"] = logs.stdout
    assert find_leaks(needles, sources) + tree_leaks(needles, root / ".mcfleet") == []  # + the journal and state


def _drift_checks_without_the_identity(
    fleet: Nodes, root: Path, env: dict[str, str], no_key: Path, bundle: Path
) -> None:
    """Someone without the identity (CI, a colleague) checks for drift: the secret is unchanged, not
    refused; a file changed on the node is refused; after a rekey, the operator's apply records it."""
    first = fleet.names[0]
    blind_env = {"MCFLEET_AGE_IDENTITY": str(no_key)}
    blind = cli("plan", "-C", str(root), "--detailed-exitcode", env=blind_env)
    assert blind.code == 0, blind.stdout + blind.stderr
    fleet.sh(first, "echo tampered >> /srv/hello/token")
    tampered = cli("plan", "-C", str(root), env=blind_env)
    assert tampered.code == 1 and "the node's file is not the one mcfleet wrote" in tampered.stdout, tampered.stdout
    fleet.sh(first, f"printf %s {POISON} > /srv/hello/token")
    # a rekey encrypts the same value again: the operator's plan records it, writing nothing, and the drift
    # check without the identity is clean again
    assert cli("secret", "rekey", "hello-token", "-C", str(root), env=env).code == 0
    assert (
        "changed since it was written (a new value, or a rekey)" in cli("plan", "-C", str(root), env=blind_env).stdout
    )
    resealed = cli("plan", "-C", str(root), env=env)
    assert "~ file /srv/hello/token" in resealed.stdout and "recorded, not written" in resealed.stdout, resealed.stdout
    applied = cli("-C", str(root), "apply", "--yes", "--bundle", str(bundle), env=env)
    assert applied.code == 0 and "recorded /srv/hello/token (already on the node)" in applied.stdout, applied.stdout
    assert cli("plan", "-C", str(root), "--detailed-exitcode", env=blind_env).code == 0


@pytest.mark.parametrize("login", ["root", "doas"])
def test_snapshot_and_restore_a_services_folder_with_numeric_owners(
    make_nodes: MakeNodes, agent_bundle: Path, registry: RegistryInfo, login: Login
) -> None:
    fleet = make_nodes(1, f"snap{login[0]}", login=login)
    name = fleet.names[0]
    root = str(fleet.lab.write_fleet(fleet.fleet_dir, nodes=[name], services=True))
    _apply(root, agent_bundle)
    # data written by the service's account, one file owned by a mapped container uid
    fleet.sh(name, "echo before > /srv/db/marker && chown mcp:mcp /srv/db/marker && "
                   "echo mapped > /srv/db/mapped && chown 100999:100999 /srv/db/mapped")  # fmt: skip
    run = cli("snapshot", name, "db", "-C", root, "--json")
    assert run.code == 0, run.stdout + run.stderr
    taken = json.loads(run.stdout)
    assert taken["path"].startswith("/var/lib/mcfleet/snapshots/db-") and taken["bytes"] > 0
    assert fleet.sh(name, f"stat -c '%U %a' {taken['path']}").stdout.split() == ["root", "600"]
    assert fleet.sh(name, f"sha256sum < {taken['path']}").stdout.split()[0] == taken["sha256"]
    assert "running" in fleet.sh(name, f"{AS_MCP} podman inspect --format '{{{{.State.Status}}}}' db").stdout

    fleet.sh(name, "echo after > /srv/db/marker && rm /srv/db/mapped")
    back = cli("restore", name, "db", taken["path"], "-C", root)
    assert back.code == 0, back.stdout + back.stderr
    assert fleet.sh(name, "cat /srv/db/marker").stdout == "before\n"
    assert fleet.sh(name, "stat -c '%u %g' /srv/db/mapped /srv/db/marker").stdout.split() == [
        "100999", "100999", "850", "850"
    ]  # fmt: skip
    assert fleet.sh(name, "cat /srv/.db.before-restore.*/marker").stdout == "after\n"  # the folder before: kept
    assert "running" in fleet.sh(name, f"{AS_MCP} podman inspect --format '{{{{.State.Status}}}}' db").stdout
    for refused_path in ("/etc/shadow", "../../etc/shadow", "db-20260101T000000Z.tar"):
        refused = cli("restore", name, "db", refused_path, "-C", root)
        assert refused.code == 2 and "is not a snapshot of db" in refused.stderr, refused.stderr
    # `latest` and the file name alone, back to back: each restore sets the folder before aside under
    # its own name (two in one second: the second waits for a new one, never moves into the first's)
    fleet.sh(name, "echo third > /srv/db/marker")
    for given in ("latest", taken["path"].rsplit("/", 1)[1]):
        again = cli("restore", name, "db", given, "-C", root, "--json")
        report = json.loads(again.stdout)
        assert again.code == 0 and report["path"] == taken["path"], again.stderr  # was: with a note appended
        assert report["set_aside"].startswith("/srv/.db.before-restore."), report
        assert fleet.sh(name, "cat /srv/db/marker").stdout == "before\n"
    # the folders set aside are listed beside the snapshots, and a prune removes them by the same rule
    listed = json.loads(cli("snapshots", name, "-C", root, "--json").stdout)
    asides = [a["path"] for a in listed["set_aside"]]
    assert len(asides) == 3 and all(a["service"] == "db" and a["bytes"] > 0 for a in listed["set_aside"]), asides
    markers = [fleet.sh(name, f"cat {a}/marker").stdout for a in sorted(asides)]
    assert markers == ["after\n", "third\n", "before\n"]  # each folder before, in the order they were replaced
    pruned = cli("snapshots", name, "--prune", "--keep", "0", "-C", root, "--json")
    assert pruned.code == 0, pruned.stdout + pruned.stderr
    assert sorted(json.loads(pruned.stdout)["removed"]) == sorted([taken["path"], *asides])
    assert not [d for d in fleet.sh(name, "ls -a /srv").stdout.split() if "before-restore" in d]  # was: kept forever
    nothing = cli("restore", name, "db", "latest", "-C", root)
    assert nothing.code == 2 and f"{name} has no snapshot of db" in nothing.stderr, nothing.stderr
    # a service with no folder in /srv: said so, and never stopped for it (was: stopped, then "exited 3")
    started = fleet.sh(name, f"{AS_MCP} podman inspect --format '{{{{.State.StartedAt}}}}' hello").stdout
    none = cli("snapshot", name, "hello", "-C", root)
    assert none.code == 1 and "hello has no folder /srv/hello" in none.stderr, none.stderr
    assert f"snapshot failed: {name}: hello has no folder" in none.stderr, none.stderr  # was "apply failed: "
    assert fleet.sh(name, f"{AS_MCP} podman inspect --format '{{{{.State.StartedAt}}}}' hello").stdout == started
