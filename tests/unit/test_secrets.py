"""Secrets: age-encrypted in the repository to the operators and the hosts that use them; a host's own
key decrypts exactly its secrets; the value never in plan, render, validate or the CLI's output."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyrage  # type: ignore[import-untyped]
import pytest
from typer.testing import CliRunner

from mcfleet.cli.app import app
from mcfleet.fleet.desired import desired_state
from mcfleet.fleet.load import load_fleet
from mcfleet.fleet.rules import check
from mcfleet.kinds.files import FilesKind
from mcfleet.observe.facts import Facts
from mcfleet.observe.files import FileFacts
from mcfleet.observe.manifest import Manifest
from mcfleet.plan.model import Plan
from mcfleet.plan.render import render_action, render_text
from tests.secret_poison import find_leaks, secret_needles

MINIMAL = Path(__file__).parent.parent / "data" / "fleets" / "minimal"
POISON = "poison-7f3a9c-never-print-me"
NOW = __import__("datetime").datetime(2026, 1, 1)


def ssh_key(folder: Path, name: str) -> tuple[Path, str]:
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(key)], check=True)
    return key, " ".join(key.with_suffix(".pub").read_text().split()[:2])


@pytest.fixture(name="fleet")
def fleet_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """The minimal fleet with an operator key, alpha's real host key, and web using secret web-token.
    Returns (root, operator identity file, alpha's host private key)."""
    root = tmp_path / "fleet"
    shutil.copytree(MINIMAL, root)
    operator = pyrage.x25519.Identity.generate()
    ident = tmp_path / "operator.key"
    ident.write_text(f"{operator}\n")
    ident.chmod(0o600)  # an identity others can read is refused
    monkeypatch.setenv("MCFLEET_AGE_IDENTITY", str(ident))
    fleet = json.loads((root / "fleet.json").read_text())
    fleet["secret_recipients"] = [str(operator.to_public())]
    (root / "fleet.json").write_text(json.dumps(fleet))
    host_priv, host_pub = ssh_key(tmp_path, "alpha_host")
    host_path = root / "hosts" / "alpha" / "host.json"
    host = json.loads(host_path.read_text())
    host["ssh"]["host_key"] = host_pub
    host_path.write_text(json.dumps(host))
    svc_path = root / "hosts" / "alpha" / "services" / "web.json"
    svc = json.loads(svc_path.read_text())
    svc["files"] = [{"path": "token", "secret": "web-token", "mode": "0600"}]
    svc_path.write_text(json.dumps(svc))
    return root, ident, host_priv


def cli(root: Path, *args: str, stdin: str | None = None) -> str:
    res = CliRunner().invoke(app, ["-C", str(root), *args], input=stdin)
    assert res.exit_code == 0, res.output
    return res.output


def test_a_missing_secret_is_a_finding_then_set_encrypts_to_operator_and_host(fleet: tuple[Path, Path, Path]) -> None:
    root, _, host_priv = fleet
    codes = [(f.code, f.host, f.pointer) for f in check(load_fleet(root))]
    assert ("secret-recipient-missing", "alpha", "/files/0/secret") in codes
    said = cli(root, "secret", "set", "web-token", "--json", stdin=POISON)
    assert POISON not in said
    recipients = json.loads(said)["recipients"]
    assert len(recipients) == 2 and any(r.startswith("ssh-ed25519 ") for r in recipients)
    assert not [f for f in check(load_fleet(root)) if f.code == "secret-recipient-missing"]
    age = (root / "secrets" / "web-token.age").read_bytes()
    assert POISON.encode() not in age
    # the node's own host key decrypts it (what the node is given is exactly its own secrets)
    node = pyrage.ssh.Identity.from_buffer(host_priv.read_bytes())
    assert pyrage.decrypt(age, [node]) == POISON.encode()
    assert cli(root, "secret", "show", "web-token") == POISON


def test_a_host_not_among_the_recipients_is_a_finding_until_rekeyed(fleet: tuple[Path, Path, Path]) -> None:
    root, _, _ = fleet
    cli(root, "secret", "set", "web-token", stdin=POISON)
    rec = root / "secrets" / "web-token.recipients"
    rec.write_text("".join(line + "\n" for line in rec.read_text().splitlines() if not line.startswith("ssh-")))
    found = [f for f in check(load_fleet(root)) if f.code == "secret-recipient-missing"]
    assert [f.message for f in found] == ["secret web-token is not encrypted to alpha's host key"]
    assert found[0].hint.startswith("mcfleet secret rekey web-token")
    assert "pin the host" not in found[0].hint  # its key is pinned already: rekey is all there is to do
    assert POISON not in cli(root, "secret", "rekey")
    assert not [f for f in check(load_fleet(root)) if f.code == "secret-recipient-missing"]


def test_plan_shows_a_secret_file_as_changed_only_and_render_never_prints_it(
    fleet: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _, _ = fleet
    cli(root, "secret", "set", "web-token", stdin=POISON)
    alpha = desired_state(load_fleet(root))["alpha"]
    want = alpha.files["/srv/web/token"]
    assert want.content == POISON and want.sha256 == "" and want.secret == "web-token"
    old = FileFacts(path=want.path, uid=850, gid=850, mode="600", sha256="0" * 64)
    acts = FilesKind().diff(alpha, Facts(host="alpha", files=[old]), Manifest(), now=NOW)
    assert [(a.kind, a.reason) for a in acts] == [("update", "secret changed")]
    create = FilesKind().diff(alpha, Facts(host="alpha", files=[]), Manifest(), now=NOW)
    plan = Plan(hosts=["alpha"], actions=[*acts, *create])
    assert "sha256" not in json.dumps([a.after for a in acts])
    needles = secret_needles(root)
    assert needles["secrets/web-token.age"] == POISON
    sources = {"plan text": render_text(plan, detailed=True), "plan json": plan.model_dump_json()}
    for args in (["render", "web"], ["render", "web", "--json"], ["validate"], ["secret", "rekey", "--json"]):
        sources[" ".join(args)] = cli(root, *args)
    assert find_leaks(needles, sources) == []
    # without an identity that decrypts it, the file is a refusal (never written empty)
    monkeypatch.setenv("MCFLEET_AGE_IDENTITY", str(root / "nosuch.key"))
    alpha = desired_state(load_fleet(root))["alpha"]
    refused = FilesKind().diff(alpha, Facts(host="alpha", files=[]), Manifest(), now=NOW)
    assert [a.kind for a in refused] == ["refuse"] and "no operator identity" in refused[0].reason


def test_a_secret_file_readable_by_group_or_others_is_invalid(fleet: tuple[Path, Path, Path]) -> None:
    root, _, _ = fleet
    svc_path = root / "hosts" / "alpha" / "services" / "web.json"
    svc = json.loads(svc_path.read_text())
    svc["files"][0]["mode"] = "0640"
    svc_path.write_text(json.dumps(svc))
    messages = [f.message for f in load_fleet(root).findings]
    assert any("lets group or others read it" in m for m in messages), messages


def test_an_identity_file_other_users_may_read_is_refused(fleet: tuple[Path, Path, Path]) -> None:
    """The operator's identity decrypts every secret of the fleet: as `ssh` refuses an unprotected
    private key, mcfleet refuses an identity file of this user that group or others may read."""
    root, ident, _ = fleet
    cli(root, "secret", "set", "web-token", stdin="v1")
    ident.chmod(0o644)
    argv = [sys.executable, "-m", "mcfleet", "-C", str(root), "secret", "show", "web-token"]
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert res.returncode == 2 and res.stdout == "", res.stdout + res.stderr
    assert f"the age identity file {ident} is open to other users (mode 0644)" in res.stderr, res.stderr
    assert f"chmod 600 {ident}" in res.stderr, res.stderr
    ident.chmod(0o600)
    assert cli(root, "secret", "show", "web-token") == "v1"


def secret_list(root: Path) -> tuple[int, dict[str, dict[str, object]], str]:
    """`secret list --json` by name, its exit code, and the table."""
    res = CliRunner().invoke(app, ["-C", str(root), "secret", "list", "--json"])
    text = CliRunner().invoke(app, ["-C", str(root), "secret", "list"])
    assert res.exit_code == text.exit_code
    return res.exit_code, {r["name"]: r for r in json.loads(res.output)["secrets"]}, text.output


def test_secret_list_says_what_each_secret_needs(fleet: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """missing -> set: ok -> alpha's host key changes: rekey (naming the key) -> rekey: ok -> the key is
    not pinned any more: host-key; a secret no service uses: unused.  Never a value, no identity needed."""
    root, _, _ = fleet
    code, rows, text = secret_list(root)
    assert code == 1 and rows["web-token"]["state"] == "missing" and rows["web-token"]["used_by"] == ["alpha/web"]
    cli(root, "secret", "set", "web-token", stdin=POISON)
    cli(root, "secret", "set", "old-token", stdin=POISON)  # encrypted to the operators only: nothing uses it
    code, rows, text = secret_list(root)
    assert code == 0 and {n: r["state"] for n, r in rows.items()} == {"old-token": "unused", "web-token": "ok"}
    assert len(rows["web-token"]["recipients"]) == 2 and "web-token  ok      alpha/web  2" in text
    host_path = root / "hosts" / "alpha" / "host.json"
    host = json.loads(host_path.read_text())
    old_key = host["ssh"]["host_key"]
    host["ssh"]["host_key"] = ssh_key(tmp_path, "alpha_new")[1]  # the node was reinstalled
    host_path.write_text(json.dumps(host))
    code, rows, text = secret_list(root)
    assert code == 1 and rows["web-token"]["state"] == "rekey"
    assert rows["web-token"]["not_encrypted_to"] == [host["ssh"]["host_key"]]
    assert rows["web-token"]["no_longer_wanted"] == [old_key]
    assert f"not encrypted to ssh-ed25519 …{host['ssh']['host_key'][-8:]}" in text
    cli(root, "secret", "rekey", "web-token")
    assert secret_list(root)[1]["web-token"]["state"] == "ok"
    del host["ssh"]["host_key"]
    host["ssh"]["known_hosts"] = "~/.ssh/known_hosts"
    host_path.write_text(json.dumps(host))
    code, rows, text = secret_list(root)
    assert code == 1 and rows["web-token"]["state"] == "host-key"
    assert rows["web-token"]["hosts_without_key"] == ["alpha"]
    assert "alpha has no pinned ssh-ed25519 ssh.host_key" in text
    assert POISON not in text + json.dumps(rows)


def test_set_refuses_an_empty_value_and_an_unreadable_file(fleet: tuple[Path, Path, Path]) -> None:
    """`cat missing.txt | mcfleet secret set x` pipes nothing: storing "" would deploy an empty token.
    --from naming no readable file is an input error (was: an internal error)."""
    root, _, _ = fleet
    for args, stdin, said in (
        ([], "", "the value for secret web-token is empty (stdin gave no bytes)"),
        (["--from", str(root / "missing.txt")], None, "cannot read it: No such file or directory"),
        (["--from", str(root)], None, "cannot read it: Is a directory"),
    ):
        argv = [sys.executable, "-m", "mcfleet", "-C", str(root), "secret", "set", "web-token", *args]
        res = subprocess.run(argv, input=stdin or "", capture_output=True, text=True, check=False)
        assert res.returncode == 2 and said in res.stderr and "internal error" not in res.stderr, res.stderr
        assert not (root / "secrets" / "web-token.age").exists()
    cli(root, "secret", "set", "web-token", "--allow-empty", stdin="")
    assert cli(root, "secret", "show", "web-token") == ""


def test_an_operator_who_cannot_decrypt_sees_an_unchanged_secret_unchanged_and_a_changed_one_refused(
    fleet: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drift check run without the identity (CI, a colleague not among the recipients) must not
    report every secret file as refused: the manifest records which encrypted file it was written from."""
    import hashlib

    from mcfleet.kinds.base import ApplyContext

    root, _, _ = fleet
    cli(root, "secret", "set", "web-token", stdin=POISON)
    loaded = load_fleet(root)
    alpha = desired_state(loaded)["alpha"]
    path = "/srv/web/token"
    create = FilesKind().diff(alpha, Facts(host="alpha", files=[]), Manifest(), now=NOW)
    ctx = ApplyContext(loaded, loaded.hosts["alpha"], None, alpha, Manifest(), {"files": [path]})  # type: ignore[arg-type]
    written = FilesKind().record(Manifest(), ctx, create)
    age = (root / "secrets" / "web-token.age").read_bytes()
    assert written.files[path].sealed == hashlib.sha256(age).hexdigest()
    assert written.files[path].written == hashlib.sha256(POISON.encode()).hexdigest()
    assert POISON not in written.model_dump_json()

    as_written = FileFacts(path=path, uid=850, gid=850, mode="600", sha256=hashlib.sha256(POISON.encode()).hexdigest())
    monkeypatch.setenv("MCFLEET_AGE_IDENTITY", str(root / "nosuch.key"))
    blind = desired_state(load_fleet(root))["alpha"]
    assert blind.files[path].content is None  # cannot decrypt
    assert FilesKind().diff(blind, Facts(host="alpha", files=[as_written]), written, now=NOW) == []

    def refused(facts: FileFacts, manifest: Manifest) -> str:
        acts = FilesKind().diff(desired_state(load_fleet(root))["alpha"], Facts(host="alpha", files=[facts]),
                                manifest, now=NOW)  # fmt: skip
        assert [a.kind for a in acts] == ["refuse"]
        assert "no operator identity" in acts[0].reason
        return acts[0].reason

    edited = as_written.model_copy(update={"sha256": "0" * 64})
    assert refused(edited, written).startswith("the node's file is not the one mcfleet wrote")
    assert refused(as_written.model_copy(update={"mode": "644"}), written).startswith("its owner or mode differ")
    assert refused(as_written, Manifest()).startswith("the manifest does not record which secrets/web-token.age")
    # apply of other changes by this operator keeps the record (the content is not known to write it again)
    blind_ctx = ApplyContext(loaded, loaded.hosts["alpha"], None, blind, written, {"files": []})  # type: ignore[arg-type]
    assert FilesKind().record(written, blind_ctx, []).files == written.files

    monkeypatch.setenv("MCFLEET_AGE_IDENTITY", str(fleet[1]))
    cli(root, "secret", "set", "web-token", stdin=POISON + "-rotated")
    monkeypatch.setenv("MCFLEET_AGE_IDENTITY", str(root / "nosuch.key"))
    assert refused(as_written, written).startswith("secrets/web-token.age changed since it was written")


def test_after_a_rekey_the_plan_records_the_new_encrypted_file_without_writing_or_restarting(
    fleet: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`secret rekey` encrypts the same value again: the node's file stays as it is, but what an operator
    without the identity compares with must be today's secrets/NAME.age, or every later check refuses."""
    import hashlib

    from mcfleet.kinds.base import ApplyContext
    from mcfleet.kinds.files import record_only
    from mcfleet.observe.manifest import ManifestService

    root, _, _ = fleet
    cli(root, "secret", "set", "web-token", stdin=POISON)
    loaded = load_fleet(root)
    alpha = desired_state(loaded)["alpha"]
    path = "/srv/web/token"
    ctx = ApplyContext(loaded, loaded.hosts["alpha"], None, alpha, Manifest(), {"files": [path]})  # type: ignore[arg-type]
    running = Manifest(services={"web": ManifestService(hash="h", stage="services", containers=["web"])})
    written = FilesKind().record(running, ctx, FilesKind().diff(alpha, Facts(host="alpha", files=[]), running, now=NOW))
    on_node = FileFacts(path=path, uid=850, gid=850, mode="600", sha256=hashlib.sha256(POISON.encode()).hexdigest())
    assert FilesKind().diff(alpha, Facts(host="alpha", files=[on_node]), written, now=NOW) == []

    cli(root, "secret", "rekey", "web-token")  # the same value, encrypted again
    loaded = load_fleet(root)
    rekeyed = desired_state(loaded)["alpha"]
    [act] = FilesKind().diff(rekeyed, Facts(host="alpha", files=[on_node]), written, now=NOW)
    assert act.kind == "update" and record_only(act)
    assert act.reason == (
        "secrets/web-token.age was encrypted again since it was written (a rekey); the node's file holds its value: "
        "recorded, not written"
    )  # no "web restarts on it": nothing on the node changes
    assert render_action(act) == [f"    ~ file {path}  {act.reason}"]  # the marker for apply is not shown
    ctx = ApplyContext(loaded, loaded.hosts["alpha"], None, rekeyed, written, {})  # type: ignore[arg-type]
    outcome = asyncio.run(FilesKind()._write(ctx, [act], {}, set()))  # no node call: it writes nothing
    assert outcome.message == f"wrote nothing; recorded {path} (already on the node)"
    resealed = FilesKind().record(written, ctx, [act])
    age = (root / "secrets" / "web-token.age").read_bytes()
    assert resealed.files[path].sealed == hashlib.sha256(age).hexdigest() != written.files[path].sealed

    monkeypatch.setenv("MCFLEET_AGE_IDENTITY", str(root / "nosuch.key"))
    blind = desired_state(load_fleet(root))["alpha"]
    assert FilesKind().diff(blind, Facts(host="alpha", files=[on_node]), resealed, now=NOW) == []
