"""The files kind: declared files rendered from the repository, probed, diffed, written as root, recorded."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mcfleet.cli.app import app
from mcfleet.errors import InputError
from mcfleet.fleet.desired import desired_state
from mcfleet.fleet.load import load_fleet
from mcfleet.kinds.base import ApplyContext
from mcfleet.kinds.files import FilesKind
from mcfleet.observe.facts import Facts
from mcfleet.observe.files import FileFacts, files_probe_body, parse_files
from mcfleet.observe.manifest import Manifest, ManifestService
from mcfleet.plan.render import render_action
from mcfleet.transport.local import LocalNode

MINIMAL = Path(__file__).parent.parent / "data" / "fleets" / "minimal"
HELPER_SOURCE = Path(__file__).parent.parent.parent / "python" / "mcfleet" / "apply" / "node_helper.py"
TEMPLATE = 'listen = "{{ address }}:{{ port.web/0 }}"\nname = "{{ hostname }}"\nzone = "{{zone}}"\n'
NOW = __import__("datetime").datetime(2026, 1, 1)


def fleet_with_files(tmp_path: Path, template: str = TEMPLATE, owner: Any = "mcp") -> Path:
    root = tmp_path / "fleet"
    shutil.copytree(MINIMAL, root)
    (root / "files" / "web").mkdir(parents=True)
    (root / "files" / "web" / "web.toml").write_text(template)
    (root / "files" / "web" / "motd").write_text("hello\n")
    svc_path = root / "hosts" / "alpha" / "services" / "web.json"
    svc = json.loads(svc_path.read_text())
    svc["files"] = [
        {"path": "web.toml", "source": "files/web/web.toml", "template": True, "owner": owner, "mode": "0640"},
        {"path": "motd", "source": "files/web/motd"},
    ]
    svc_path.write_text(json.dumps(svc, indent=2))
    return root


def test_template_is_rendered_with_the_values_mcfleet_knows(tmp_path: Path) -> None:
    loaded = load_fleet(fleet_with_files(tmp_path))
    alpha = desired_state(loaded)["alpha"]
    port = alpha.services["web"].ports["web/0"]
    toml = alpha.files["/srv/web/web.toml"]
    assert toml.content == f'listen = "10.0.0.1:{port}"\nname = "www.example.test"\nzone = "svc.example.test"\n'
    assert (toml.uid, toml.gid, toml.mode, toml.service) == (850, 850, "0640", "web")
    assert alpha.files["/srv/web/motd"].content == "hello\n"
    assert any(d.path == "/srv/web" and d.owner == "mcp" for d in alpha.dirs)
    # the files do not change the service's hash: a content change restarts, it does not redeploy
    plain = desired_state(load_fleet(MINIMAL))["alpha"].services["web"].hash
    assert alpha.services["web"].hash == plain


def test_unknown_placeholder_is_an_error_naming_the_file_and_the_known_values(tmp_path: Path) -> None:
    loaded = load_fleet(fleet_with_files(tmp_path, template="x = {{ nope }}\n"))
    with pytest.raises(InputError) as err:
        desired_state(loaded)
    assert "{{ nope }}" in err.value.message
    assert "files/web/web.toml" in (err.value.location or "")
    assert "port.web/0" in (err.value.hint or "")


def test_container_owner_maps_through_the_agent_users_subuid_range(tmp_path: Path) -> None:
    root = fleet_with_files(tmp_path, owner=1000)
    with pytest.raises(InputError, match="no subuid/subgid range"):
        desired_state(load_fleet(root))
    host_path = root / "hosts" / "alpha" / "host.json"
    host = json.loads(host_path.read_text())
    host["users"]["mcp"]["subuid"] = {"start": 200000, "count": 65536}
    host["users"]["mcp"]["subgid"] = {"start": 300000, "count": 65536}
    host_path.write_text(json.dumps(host))
    toml = desired_state(load_fleet(root))["alpha"].files["/srv/web/web.toml"]
    assert (toml.uid, toml.gid) == (200999, 300999)


def test_probe_then_diff_plans_create_update_with_a_unified_diff_and_nothing_in_sync(tmp_path: Path) -> None:
    loaded = load_fleet(fleet_with_files(tmp_path))
    alpha = desired_state(loaded)["alpha"]
    node = tmp_path / "node"
    node.mkdir()
    toml = alpha.files["/srv/web/web.toml"]
    here = {p: str(node / Path(p).name) for p in alpha.files}
    (node / "web.toml").write_text(toml.content.replace("zone", "old_zone"))
    os.chmod(node / "web.toml", 0o640)
    os.chown(node / "web.toml", 850, 850)
    os.symlink("/etc/passwd", node / "motd")  # a link is never read nor followed: absent
    out = subprocess.run(
        ["sh", "-c", files_probe_body(tuple(here.values()), tuple(here.values()))],
        check=True,
        capture_output=True,
        text=True,
    )
    seen = {f.path: f for f in parse_files(out.stdout)}
    facts_files = [seen[here[p]].model_copy(update={"path": p}) for p in sorted(alpha.files)]
    facts = Facts(host="alpha", files=facts_files)
    acts = {a.subject: a for a in FilesKind().diff(alpha, facts, Manifest(), now=NOW)}
    assert acts["file /srv/web/motd"].kind == "create"
    upd = acts["file /srv/web/web.toml"]
    assert (upd.kind, upd.reason) == ("update", "content changed")
    assert '-old_zone = "svc.example.test"' in upd.after["diff"]
    assert '+zone = "svc.example.test"' in upd.after["diff"]
    assert upd.before["owner"] == "850:850" and upd.before["mode"] == "0640"
    # the service already runs: apply restarts it on the new file, and the plan says so
    ran = Manifest(services={"web": ManifestService(hash="h", stage="services", containers=["web"])})
    restarts = {a.subject: a for a in FilesKind().diff(alpha, facts, ran, now=NOW)}
    assert restarts["file /srv/web/web.toml"].reason == "content changed; web restarts on it"
    assert restarts["file /srv/web/motd"].reason == acts["file /srv/web/motd"].reason  # a new file: no restart
    shown = "\n".join(render_action(upd))
    assert '        +zone = "svc.example.test"' in shown and "diff:" not in shown
    in_sync = [f.model_copy(update={"sha256": alpha.files[f.path].sha256}) for f in facts_files]
    in_sync = [f.model_copy(update={"present": True, "uid": 850, "gid": 850, "mode": "640"}) for f in in_sync]
    assert FilesKind().diff(alpha, Facts(host="alpha", files=in_sync), Manifest(), now=NOW) == []


class HelperHere(LocalNode):
    """A local node whose root helper is the package's source file (not the node's installed copy)."""

    async def run(self, command: Any, **kw: Any) -> Any:
        if isinstance(command, list) and command[:1] == ["python3"]:
            command = ["python3", str(HELPER_SOURCE), *command[2:]]
        return await super().run(command, **kw)


def test_apply_writes_each_file_through_the_node_helper_and_records_it(tmp_path: Path) -> None:
    loaded = load_fleet(fleet_with_files(tmp_path))
    alpha = desired_state(loaded)["alpha"]
    node = tmp_path / "srv-web"
    node.mkdir()
    moved = {
        str(node / Path(p).name): dataclasses.replace(f, path=str(node / Path(p).name)) for p, f in alpha.files.items()
    }
    alpha.files = moved
    facts = Facts(host="alpha", files=[])
    acts = FilesKind().diff(alpha, facts, Manifest(), now=NOW)
    assert [a.kind for a in acts] == ["create", "create"]
    ctx = ApplyContext(loaded, loaded.hosts["alpha"], HelperHere("alpha"), alpha, Manifest())
    outcome = asyncio.run(FilesKind().apply(ctx, acts))
    assert outcome.status == "changed"
    toml = node / "web.toml"
    st = toml.stat()
    assert (st.st_uid, st.st_gid, oct(st.st_mode & 0o777)) == (850, 850, "0o640")
    assert toml.read_text() == moved[str(toml)].content
    assert not [p for p in node.iterdir() if p.name.endswith(".tmp")]
    m = FilesKind().record(Manifest(), ctx, acts)
    assert m.files[str(toml)].sha256 == moved[str(toml)].sha256
    # a link planted where a file goes is replaced, never followed
    victim = tmp_path / "victim"
    victim.write_text("keep")
    toml.unlink()
    toml.symlink_to(victim)
    asyncio.run(FilesKind().apply(ctx, [a for a in acts if a.subject.endswith("web.toml")]))
    assert victim.read_text() == "keep" and not toml.is_symlink()


def test_render_prints_the_rendered_files_as_install_commands(tmp_path: Path) -> None:
    root = fleet_with_files(tmp_path)
    res = CliRunner().invoke(app, ["-C", str(root), "render", "web"])
    assert res.exit_code == 0, res.output
    assert "python3 -c \"$MCFLEET_NODE\" put /srv/web/web.toml 0640 850:850 <<'MCFLEET_EOF'" in res.output
    assert 'zone = "svc.example.test"' in res.output
    res = CliRunner().invoke(app, ["-C", str(root), "render", "web", "--json"])
    files = [x for x in json.loads(res.output) if "file" in x]
    assert {f["file"] for f in files} == {"/srv/web/web.toml", "/srv/web/motd"}


def _render_and_run(tmp_path: Path, plant: str) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    """`mcfleet render web` for a file in a sub-folder, run as root by `sh` in a private mount namespace
    whose /srv is a fresh tmpfs holding /srv/web (the agent's, uid 850); `plant` runs first (as root,
    standing in for the agent's account).  Returns the run, the tmpfs's view on the host (a copy) and
    the victim folder outside /srv."""
    root = fleet_with_files(tmp_path)
    (root / "files" / "web" / "app.conf").write_text("kernel.core_pattern = |/srv/web/pwn\n")
    svc_path = root / "hosts" / "alpha" / "services" / "web.json"
    svc = json.loads(svc_path.read_text())
    svc["files"].append({"path": "conf/app.conf", "source": "files/web/app.conf", "mode": "0644"})
    svc_path.write_text(json.dumps(svc, indent=2))
    res = CliRunner().invoke(app, ["-C", str(root), "render", "web"])
    assert res.exit_code == 0, res.output
    script = tmp_path / "recover.sh"
    script.write_text(res.output.split("\n# web/", 1)[0] + "\n")  # the files; not the podman commands
    victim, seen = tmp_path / "victim", tmp_path / "seen"
    victim.mkdir(mode=0o755)
    body = (
        "set -e; mount -t tmpfs tmpfs /srv; mkdir -m 0750 /srv/web; chown 850:850 /srv/web; "
        f"{plant}; sh -e {script} || echo exit=$?; cp -a /srv/web {seen}"
    )
    run = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", body],
                         capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
    return run, seen, victim


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare (mount /srv)")
def test_the_rendered_files_run_as_root_write_them_with_their_owner_and_mode(tmp_path: Path) -> None:
    run, seen, _victim = _render_and_run(tmp_path, plant="true")
    assert "exit=" not in run.stdout, run.stdout + run.stderr
    conf = seen / "conf" / "app.conf"
    assert conf.read_text() == "kernel.core_pattern = |/srv/web/pwn\n"
    assert (conf.stat().st_uid, stat.S_IMODE(conf.stat().st_mode)) == (850, 0o644)
    assert (conf.parent.stat().st_uid, stat.S_IMODE(conf.parent.stat().st_mode)) == (850, 0o750)
    assert (seen / "web.toml").stat().st_uid == 850 and (seen / "motd").read_text() == "hello\n"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare (mount /srv)")
def test_the_rendered_files_follow_no_link_the_agents_account_planted_in_a_service_folder(tmp_path: Path) -> None:
    """/srv/web is the agent account's: a link there to a root folder (e.g. /etc/sysctl.d) must not make the
    recovery script, run as root, create a file there (that account could then write it: root at boot)."""
    victim = tmp_path / "victim"
    run, seen, victim = _render_and_run(tmp_path, plant=f"ln -s {victim} /srv/web/conf")
    assert "exit=" in run.stdout, run.stdout + run.stderr
    assert list(victim.iterdir()) == []
    assert "conf" in run.stderr and "link" in run.stderr, run.stderr
    assert (seen / "conf").is_symlink()


def test_a_file_no_longer_declared_is_removed_by_the_helper_and_leaves_the_manifest(tmp_path: Path) -> None:
    loaded = load_fleet(fleet_with_files(tmp_path))
    alpha = desired_state(loaded)["alpha"]
    node = tmp_path / "srv-web"
    node.mkdir()
    gone, linked = node / "old.conf", node / "planted.conf"
    gone.write_text("old")
    victim = tmp_path / "victim"
    victim.write_text("keep")
    linked.symlink_to(victim)  # the service's account planted a link where a recorded file was
    recorded = Manifest.model_validate(
        {
            "files": {
                str(p): {"service": "web", "sha256": "00", "owner": "850:850", "mode": "0640"} for p in (gone, linked)
            }
        }
    )
    alpha.files = {}
    acts = FilesKind().diff(alpha, Facts(host="alpha", files=[]), recorded, now=NOW)
    assert sorted((a.kind, a.subject) for a in acts) == [("delete", f"file {gone}"), ("delete", f"file {linked}")]
    ctx = ApplyContext(loaded, loaded.hosts["alpha"], HelperHere("alpha"), alpha, recorded)
    assert FilesKind().record(recorded, ctx, acts).files == recorded.files  # not removed yet: still recorded
    outcome = asyncio.run(FilesKind().apply(ctx, acts))
    assert outcome.status == "changed" and "removed" in outcome.message
    assert not gone.exists() and not linked.is_symlink() and victim.read_text() == "keep"
    assert FilesKind().record(recorded, ctx, acts).files == {}


def test_a_file_in_a_sub_folder_gets_its_folder_owned_like_the_file(tmp_path: Path, monkeypatch: Any) -> None:
    import mcfleet.fleet.files as fleet_files

    root = fleet_with_files(tmp_path, owner=1000)
    svc_path = root / "hosts" / "alpha" / "services" / "web.json"
    svc = json.loads(svc_path.read_text())
    svc["files"] = [{"path": "certs/ca/ca.pem", "source": "files/web/motd", "owner": 1000, "mode": "0640"}]
    svc_path.write_text(json.dumps(svc))
    host_path = root / "hosts" / "alpha" / "host.json"
    host = json.loads(host_path.read_text())
    host["users"]["mcp"].update(
        {"subuid": {"start": 200000, "count": 65536}, "subgid": {"start": 300000, "count": 65536}}
    )
    host_path.write_text(json.dumps(host))
    loaded = load_fleet(root)
    alpha = desired_state(loaded)["alpha"]
    base = tmp_path / "srv-web"
    base.mkdir()
    monkeypatch.setattr(fleet_files, "service_dir", lambda name: str(base))
    ((path, want),) = alpha.files.items()
    assert path == "/srv/web/certs/ca/ca.pem"
    here = str(base / "certs" / "ca" / "ca.pem")
    alpha.files = {here: dataclasses.replace(want, path=here)}
    acts = FilesKind().diff(alpha, Facts(host="alpha", files=[]), Manifest(), now=NOW)
    ctx = ApplyContext(loaded, loaded.hosts["alpha"], HelperHere("alpha"), alpha, Manifest())
    assert asyncio.run(FilesKind().apply(ctx, acts)).status == "changed"
    for folder in (base / "certs", base / "certs" / "ca"):
        st = folder.stat()
        assert (st.st_uid, st.st_gid, oct(st.st_mode & 0o777)) == (want.uid, want.gid, "0o750")
    assert (base / "certs" / "ca" / "ca.pem").read_text() == "hello\n"


@pytest.mark.parametrize("path", ["../etc/passwd", "certs/../../x", ".hidden", "certs/.x", "/abs", "a/b/c/d/e", "a//b"])
def test_a_file_path_never_leaves_its_service_folder(path: str) -> None:
    from pydantic import ValidationError

    from mcfleet.fleet.models import ServiceFile

    with pytest.raises(ValidationError):
        ServiceFile(path=path, source="files/x")
    assert ServiceFile(path="certs/ca.pem", source="files/x").path == "certs/ca.pem"


def test_a_binary_file_is_planned_without_a_diff_and_written_byte_for_byte(tmp_path: Path, monkeypatch: Any) -> None:
    from mcfleet.fleet.files import RenderedFile

    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the upload folder of this (local) login
    (tmp_path / "home").mkdir()
    root = fleet_with_files(tmp_path)
    blob = bytes(range(256)) * 4
    (root / "files" / "web" / "motd").write_bytes(blob)
    loaded = load_fleet(root)
    alpha = desired_state(loaded)["alpha"]
    want = alpha.files["/srv/web/motd"]
    assert want.content is None and want.data == blob
    assert "binary, 1024 bytes" in RenderedFile("alpha", want).script()
    node = tmp_path / "srv-web"
    node.mkdir()
    here = str(node / "motd")
    alpha.files = {here: dataclasses.replace(want, path=here)}
    (act,) = FilesKind().diff(alpha, Facts(host="alpha", files=[]), Manifest(), now=NOW)
    ctx = ApplyContext(loaded, loaded.hosts["alpha"], HelperHere("alpha"), alpha, Manifest())
    assert asyncio.run(FilesKind().apply(ctx, [act])).status == "changed"
    assert (node / "motd").read_bytes() == blob
    assert list((tmp_path / "home").iterdir()) == []  # the upload folder is gone
    seen = FileFacts(path=here, uid=850, gid=850, mode="640", sha256="0" * 64, text="garbage")
    (upd,) = FilesKind().diff(alpha, Facts(host="alpha", files=[seen]), Manifest(), now=NOW)
    assert upd.reason == "content changed (binary, 1024 bytes)" and "diff" not in upd.after


def test_the_services_whose_containers_the_deploy_recreates_are_left_to_it() -> None:
    """A changed image or container spec: the deploy starts the new containers on the new files, so the files
    phase does not restart the old ones on them first; a definition change that keeps the containers, a new
    service or a removal does not count."""
    from types import SimpleNamespace

    from mcfleet.kinds.base import PLANNED
    from mcfleet.kinds.files import recreated_by_deploy
    from mcfleet.phase import Phase
    from mcfleet.plan.model import Action

    def deploy(kind: str, subject: str, before: object = None, after: object = None) -> Action:
        return Action(host="n1", phase=Phase.deploy, kind=kind, subject=subject, before=before, after=after,
                      reason="r")  # fmt: skip

    planned = [
        deploy("update", "service web", {"images": {"web": "w:1"}}, {"images": {"web": "w:2"}}),
        deploy("replace", "service db", {"images": {"db": "d:1"}}, {"images": {"db": "d:1"}}),
        deploy("update", "service api", {"images": {"api": "a:1"}}, {"images": {"api": "a:1"}}),
        deploy("create", "service new"),
        deploy("delete", "service old"),
        Action(host="n1", phase=Phase.files, kind="update", subject="file /srv/web/web.toml", reason="r"),
    ]
    ctx = SimpleNamespace(data={PLANNED: planned})
    assert recreated_by_deploy(ctx) == {"web", "db"}  # type: ignore[arg-type]
    assert recreated_by_deploy(SimpleNamespace(data={})) == set()  # type: ignore[arg-type]


def test_the_files_of_a_service_the_deploy_recreates_are_kept_for_it_and_a_planted_link_is_not(
    tmp_path: Path,
) -> None:
    """Before the write, each changed file of a running service is copied to root's store (put back if its
    service does not get healthy); a link planted at its path is replaced as before, never read into the
    store; the deploy's end removes the copies it kept."""
    from mcfleet.kinds.base import PLANNED
    from mcfleet.kinds.files import DEFERRED, drop_deferred
    from mcfleet.phase import Phase
    from mcfleet.plan.model import Action

    loaded = load_fleet(fleet_with_files(tmp_path))
    alpha = desired_state(loaded)["alpha"]
    node = tmp_path / "srv-web"
    node.mkdir()
    alpha.files = {str(node / Path(p).name): dataclasses.replace(f, path=str(node / Path(p).name))
                   for p, f in alpha.files.items()}  # fmt: skip
    here = HelperHere("alpha")
    store = tmp_path / "store"
    store.mkdir(mode=0o700)
    here.store = str(store)
    created = FilesKind().diff(alpha, Facts(host="alpha", files=[]), Manifest(), now=NOW)
    asyncio.run(FilesKind().apply(ApplyContext(loaded, loaded.hosts["alpha"], here, alpha, Manifest()), created))
    victim = tmp_path / "victim"
    victim.write_text("keep")
    toml, motd = node / "web.toml", node / "motd"
    toml.unlink()
    toml.symlink_to(victim)
    motd.write_text("the previous motd\n")
    updates = [Action(host="alpha", phase=Phase.files, kind="update", subject=f"file {p}", reason="content changed",
                      before={"owner": "850:850", "mode": "0640"}) for p in (str(toml), str(motd))]  # fmt: skip
    recreate = Action(host="alpha", phase=Phase.deploy, kind="replace", subject="service web", reason="r")
    ran = Manifest(services={"web": ManifestService(hash="h", stage="services", containers=["web"])})
    ctx = ApplyContext(loaded, loaded.hosts["alpha"], here, alpha, ran, {PLANNED: [recreate]})
    outcome = asyncio.run(FilesKind().apply(ctx, updates))
    assert outcome.status == "changed" and "restarted" not in outcome.message  # left to the deploy
    assert f"no copy kept of {toml} (a link, not a plain file, or one with a second name" in outcome.message
    assert victim.read_text() == "keep" and not toml.is_symlink()
    assert list(ctx.data[DEFERRED]) == [str(motd)]  # the link had nothing to keep
    [copy] = [p for p in store.iterdir() if p.name.startswith("previous.")]
    assert copy.read_text() == "the previous motd\n" and oct(copy.stat().st_mode & 0o777) == "0o600"
    asyncio.run(drop_deferred(ctx))
    assert not [p for p in store.iterdir() if p.name.startswith("previous.")]


def test_a_file_put_back_after_its_service_failed_keeps_its_earlier_manifest_entry(tmp_path: Path) -> None:
    """The record after a failed files phase listed the new sha256 of a file that was put back (the node
    holds the old content), so the apply said 'recorded what succeeded before the failure (nothing)' and
    changed the manifest.  A planned change not left in place keeps the entry it had."""
    from mcfleet.observe.manifest import ManifestFile
    from mcfleet.phase import Phase
    from mcfleet.plan.model import Action

    loaded = load_fleet(fleet_with_files(tmp_path))
    alpha = desired_state(loaded)["alpha"]
    old = {
        p: ManifestFile(service=f.service, sha256="0" * 64, owner=f.owner, mode=f.mode) for p, f in alpha.files.items()
    }
    had = Manifest(files=old)
    acts = [Action(host="alpha", phase=Phase.files, kind="update", subject=f"file {p}", reason="content changed")
            for p in alpha.files]  # fmt: skip
    ctx = ApplyContext(loaded, loaded.hosts["alpha"], HelperHere("alpha"), alpha, had)
    ctx.data["files"] = []  # written, then put back (files.py _put_back drops them from the list)
    assert FilesKind().record(had, ctx, acts) == had
    [first, *_] = sorted(alpha.files)
    ctx.data["files"] = [first]  # this one stayed
    recorded = FilesKind().record(had, ctx, acts).files
    assert recorded[first].sha256 == alpha.files[first].sha256
    assert all(recorded[p] == old[p] for p in alpha.files if p != first)


def test_validate_knows_exactly_the_names_a_plan_fills(tmp_path: Path) -> None:
    """template-unknown (validate) and the plan's rendering agree: every name validate lists renders, and a
    name it refuses makes the plan fail."""
    from mcfleet.fleet.rules import check
    from mcfleet.fleet.rules_files import template_names

    root = fleet_with_files(tmp_path)
    svc = load_fleet(root).hosts["alpha"].services[0]
    everything = "".join(f"{{{{ {n} }}}}\n" for n in template_names(svc))
    (root / "files" / "web" / "web.toml").write_text(everything)
    loaded = load_fleet(root)
    assert [f.code for f in check(loaded)] == []
    desired_state(loaded)  # renders: no unknown name
    (root / "files" / "web" / "web.toml").write_text(everything + "{{ port.web/1 }}\n")
    loaded = load_fleet(root)
    assert [f.code for f in check(loaded)] == ["template-unknown"]
    with pytest.raises(InputError, match=r"unknown template value \{\{ port.web/1 \}\}"):
        desired_state(loaded)


def test_the_probe_reads_no_file_through_a_folder_swapped_for_a_link(tmp_path: Path) -> None:
    """The agent's account owns /srv/<svc>: it can swap a sub-folder for a link to a root-only folder. Root's
    facts script would then send that folder's file (its text, for a declared non-secret file) to the plan."""
    private = tmp_path / "root-only"
    private.mkdir()
    (private / "app.toml").write_text("root's own settings\n")
    svc = tmp_path / "srv-web"
    svc.mkdir()
    (svc / "conf").symlink_to(private)
    (svc / "plain.toml").write_text("plain\n")
    wanted = (str(svc / "conf" / "app.toml"), str(svc / "plain.toml"))
    out = subprocess.run(["sh", "-c", files_probe_body(wanted, wanted)], check=True, capture_output=True, text=True)
    seen = {f.path: f for f in parse_files(out.stdout)}
    assert not seen[wanted[0]].present and "root's own" not in out.stdout
    assert seen[wanted[1]].present and seen[wanted[1]].text == "plain\n"


def test_the_probe_reads_no_text_of_a_file_with_a_second_name(tmp_path: Path) -> None:
    """Where fs.protected_hardlinks is 0 the agent's account can give a root file a second name in its
    folder: root's facts script must not send that file's text to the plan (its stat and hash show none)."""
    private = tmp_path / "root-only"
    private.mkdir()
    (private / "shadow").write_text("root's own secret\n")
    svc = tmp_path / "srv-web"
    svc.mkdir()
    os.link(private / "shadow", svc / "web.toml")
    (svc / "plain.toml").write_text("plain\n")
    wanted = (str(svc / "web.toml"), str(svc / "plain.toml"))
    out = subprocess.run(["sh", "-c", files_probe_body(wanted, wanted)], check=True, capture_output=True, text=True)
    seen = {f.path: f for f in parse_files(out.stdout)}
    assert seen[wanted[0]].present and seen[wanted[0]].text is None and "root's own" not in out.stdout
    guarded = Path("/proc/sys/fs/protected_hardlinks").read_text().strip() == "1"
    assert seen[wanted[1]].text == ("plain\n" if guarded else None)  # one name: read where the kernel guards links
