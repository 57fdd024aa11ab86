"""The root helper that does every root file operation on a node (apply/node_helper.py), on scratch folders.

Each case is an attack of the agent's account on root's file operations in its folder.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from mcfleet.apply.nodeio import helper_source


def helper(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-c", helper_source(), *args], input=stdin, capture_output=True, check=False)


def test_put_replaces_a_planted_link_instead_of_writing_through_it(tmp_path: Path) -> None:
    victim = tmp_path / "etc-shadow"
    victim.write_text("root's secret\n")
    folder = tmp_path / "srv"
    folder.mkdir()
    (folder / "mcp-agent").symlink_to(victim)  # planted at the name root installs to
    res = helper("put", str(folder / "mcp-agent"), "0755", f"{os.getuid()}:{os.getgid()}", stdin=b"agent")
    assert res.returncode == 0, res.stderr
    assert victim.read_text() == "root's secret\n"  # not written through the link
    assert not (folder / "mcp-agent").is_symlink() and (folder / "mcp-agent").read_bytes() == b"agent"
    assert sorted(p.name for p in folder.iterdir()) == ["mcp-agent"]


def test_put_refuses_a_folder_that_is_a_link(tmp_path: Path) -> None:
    real = tmp_path / "etc"
    real.mkdir()
    (tmp_path / "srv").symlink_to(real)
    res = helper("put", str(tmp_path / "srv" / "x"), "0644", "0:0", stdin=b"x")
    assert res.returncode == 2
    assert b"not a folder (a link or a file): refusing to follow it" in res.stderr
    assert list(real.iterdir()) == []


def test_put_from_a_link_or_a_fifo_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s")
    (tmp_path / "link").symlink_to(tmp_path / "secret")
    os.mkfifo(tmp_path / "fifo")
    for source in ("link", "fifo"):
        res = helper("put", str(tmp_path / "out"), "0644", "0:0", "--from", str(tmp_path / source))
        assert res.returncode == 2, source
    assert not (tmp_path / "out").exists()


def test_a_hash_mismatch_installs_nothing_and_leaves_no_temp_file(tmp_path: Path) -> None:
    (tmp_path / "dest").write_text("good")
    res = helper("put", str(tmp_path / "dest"), "0755", "0:0", "--sha", "0" * 64, stdin=b"changed upload")
    assert res.returncode == 2
    assert b"hash mismatch" in res.stderr
    assert (tmp_path / "dest").read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]


def test_hash_reads_only_regular_files(tmp_path: Path) -> None:
    (tmp_path / "bin").write_bytes(b"abc")
    (tmp_path / "link").symlink_to(tmp_path / "bin")
    os.mkfifo(tmp_path / "fifo")
    res = helper("hash", *(str(tmp_path / n) for n in ("bin", "link", "fifo", "none")))
    lines = dict(line.split("=", 1) for line in res.stdout.decode().splitlines())
    assert lines[str(tmp_path / "bin")] == hashlib.sha256(b"abc").hexdigest()
    assert lines[str(tmp_path / "link")] == "!link"
    assert lines[str(tmp_path / "fifo")] == "!other"
    assert lines[str(tmp_path / "none")] == "-"


def test_secure_changes_a_regular_file_and_never_a_link_or_a_folder_through_a_link(tmp_path: Path) -> None:
    """`secure` (a certificate's key made 0600 and the proxy user's) as chown(1) names the owner."""
    victim = tmp_path / "etc-shadow"
    victim.write_text("root's secret\n")
    victim.chmod(0o640)
    certs = tmp_path / "certs"
    certs.mkdir()
    key = certs / "web.key"
    key.write_text("key")
    key.chmod(0o644)
    os.chown(key, 4242, 4242)
    res = helper("secure", str(key), "0600", "root")
    assert (res.returncode, res.stdout) == (0, b"secured=yes\n"), res.stderr
    assert (key.stat().st_mode & 0o777, key.stat().st_uid, key.stat().st_gid) == (0o600, 0, 4242)  # group kept
    (certs / "linked.key").symlink_to(victim)
    res = helper("secure", str(certs / "linked.key"), "0600", "4242:4242")
    assert (res.returncode, res.stdout) == (0, b"secured=no\n"), res.stderr
    assert (victim.stat().st_mode & 0o777, victim.stat().st_uid) == (0o640, 0)  # the link's target: untouched
    assert helper("secure", str(certs / "absent.key"), "0600", "root").stdout == b"secured=no\n"
    (tmp_path / "via").symlink_to(tmp_path)  # a folder on the way that is a link: refused
    res = helper("secure", str(tmp_path / "via" / "etc-shadow"), "0600", "4242")
    assert res.returncode == 2 and b"refusing to follow it" in res.stderr
    assert helper("secure", str(key), "0600", "no-such-user-here").stderr.startswith(b"mcfleet-node: no such account")


def test_the_store_is_prepared_once_per_connection(tmp_path: Path) -> None:
    """Apply's lock prepares root's store first; the later steps (the HAProxy map file, a certificate's key)
    call ensure_store again on the same connection and send nothing. A new connection prepares it again."""
    import asyncio

    from mcfleet.apply.nodeio import ensure_store
    from mcfleet.transport.local import LocalNode

    store = tmp_path / "store"
    node = LocalNode(store=str(store))
    asyncio.run(ensure_store(node))
    installed = store / "mcfleet-node.py"
    assert installed.read_text() == helper_source() and store.stat().st_mode & 0o777 == 0o700
    installed.unlink()
    asyncio.run(ensure_store(node))  # the same connection: no round trip
    assert not installed.exists()
    asyncio.run(ensure_store(LocalNode(store=str(store))))
    assert installed.read_text() == helper_source()


PAYLOAD = b"-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n--mcfleet-chain-follows--\nchain\n"


def test_pair_installs_a_key_and_its_chain_without_following_a_link_the_proxy_user_planted(tmp_path: Path) -> None:
    """A certificate is installed by root in a folder the proxy's account may write (mc-proxy's): a link it
    planted at the key's name is replaced, never written through, and its target is left as it was."""
    certs = tmp_path / "certs"
    certs.mkdir()
    victim = tmp_path / "etc-shadow"
    victim.write_text("root's secret\n")
    (certs / "web.key").symlink_to(victim)
    res = helper("pair", str(certs / "web.key"), str(certs / "web.pem"), "4242", stdin=PAYLOAD)
    assert (res.returncode, res.stdout) == (0, b"installed=yes\n"), res.stderr
    assert victim.read_text() == "root's secret\n" and victim.stat().st_uid == os.getuid()
    key, cert = (certs / "web.key").lstat(), (certs / "web.pem").lstat()
    assert (key.st_mode & 0o777, key.st_uid) == (0o600, 4242) and not (certs / "web.key").is_symlink()
    assert (cert.st_mode & 0o777, cert.st_uid) == (0o644, 4242)
    assert (certs / "web.key").read_bytes() == b"-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n"
    assert (certs / "web.pem").read_bytes() == b"chain\n"
    assert sorted(p.name for p in certs.iterdir()) == ["web.key", "web.pem"]  # no temp file left


def test_pair_refuses_a_linked_folder_and_a_payload_without_both_parts(tmp_path: Path) -> None:
    real = tmp_path / "etc"
    real.mkdir()
    (tmp_path / "certs").symlink_to(real)
    res = helper("pair", str(tmp_path / "certs" / "web.key"), str(tmp_path / "certs" / "web.pem"), "0", stdin=PAYLOAD)
    assert res.returncode == 2 and b"refusing to follow it" in res.stderr
    assert list(real.iterdir()) == []
    folder = tmp_path / "plain"
    folder.mkdir()
    res = helper("pair", str(folder / "web.key"), str(folder / "web.pem"), "0", stdin=b"only a key\n")
    assert res.returncode == 2 and b"pair: stdin must be a key, the separator line, then a chain" in res.stderr
    assert list(folder.iterdir()) == []


def test_mkdir_makes_folders_and_never_changes_one_through_a_link_the_agents_account_planted(tmp_path: Path) -> None:
    """A service volume under a folder the agent's account owns (/srv/db/sub): that account can swap it for
    a link to /etc, which a root `chown` would follow and hand it. The helper refuses the link instead."""
    srv = tmp_path / "srv"
    srv.mkdir()
    res = helper("mkdir", str(srv / "db"), "0750", "4242:4243", str(srv / "new" / "deep"), "0700", "4242")
    assert res.returncode == 0, res.stderr
    db, deep, made_parent = (srv / "db").stat(), (srv / "new" / "deep").stat(), (srv / "new").stat()
    assert (db.st_mode & 0o777, db.st_uid, db.st_gid) == (0o750, 4242, 4243)
    assert (deep.st_mode & 0o777, deep.st_uid) == (0o700, 4242)
    assert (made_parent.st_mode & 0o777, made_parent.st_uid) == (0o755, 0)  # a missing parent: root's, as install -d
    etc = tmp_path / "etc"
    etc.mkdir(mode=0o755)
    (srv / "db" / "sub").symlink_to(etc)
    res = helper("mkdir", str(srv / "db" / "sub"), "0750", "4242:4242")
    assert res.returncode == 2 and b"is not a folder (a link or a file): refusing to follow it" in res.stderr
    assert (etc.stat().st_uid, etc.stat().st_mode & 0o777) == (0, 0o755)
    assert helper("mkdir", str(srv / "x"), "0750").returncode == 2  # not a triple


def test_a_file_with_a_second_name_is_neither_copied_nor_secured(tmp_path: Path) -> None:
    """Where the kernel lets a user hard-link a file it does not own (fs.protected_hardlinks=0), the agent's
    account could link root's file into its folder: root must not copy it out nor hand it over."""
    victim = tmp_path / "etc-shadow"
    victim.write_text("root's secret\n")
    victim.chmod(0o640)
    certs = tmp_path / "certs"
    certs.mkdir()
    os.link(victim, certs / "web.key")  # planted at a name root secures (a certificate's key)
    res = helper("secure", str(certs / "web.key"), "0600", "4242:4242")
    assert res.returncode == 2 and b"has 2 names (hard links)" in res.stderr, res.stderr
    assert (victim.stat().st_mode & 0o777, victim.stat().st_uid) == (0o640, 0)
    res = helper("put", str(tmp_path / "copy"), "0644", "4242:4242", "--from", str(certs / "web.key"))
    assert res.returncode == 2 and b"has 2 names (hard links)" in res.stderr, res.stderr
    assert not (tmp_path / "copy").exists()
    assert helper("hash", str(certs / "web.key")).stdout.decode() == f"{certs / 'web.key'}=!links\n"  # not read
    os.unlink(victim)  # one name again: an ordinary file, secured as before
    assert helper("secure", str(certs / "web.key"), "0600", "4242:4242").stdout == b"secured=yes\n"
