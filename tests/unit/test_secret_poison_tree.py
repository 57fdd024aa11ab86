"""tests/secret_poison.py's tree search: every file, any size, in constant memory."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

from tests import secret_poison
from tests.secret_poison import tree_leaks

NEEDLE = "mcfleet-poison-0123456789abcdef0123"
REPO = Path(__file__).resolve().parents[2]


def test_a_needle_across_a_chunk_boundary_of_a_large_file_is_found(tmp_path: Path) -> None:
    big = tmp_path / "node" / "var" / "log" / "big.log"
    big.parent.mkdir(parents=True)
    split = secret_poison.CHUNK * 5 - len(NEEDLE) // 2  # 20 MiB in: past the old 16 MiB cap, across a chunk edge
    with big.open("wb") as f:
        f.write(b"\0" * split + NEEDLE.encode() + b"\n" * 100)
    assert tree_leaks({"tsig": NEEDLE}, tmp_path) == [f"tsig in {big}"]


def test_a_base64_form_and_each_needle_are_reported_per_file(tmp_path: Path) -> None:
    encoded = base64.b64encode(("x" + NEEDLE).encode()).decode()  # the needle one byte off the 3-byte grid
    (tmp_path / "a.json").write_text(f'{{"value": "{encoded}"}}')
    (tmp_path / "b.txt").write_text(f"{NEEDLE} and again {NEEDLE}")
    (tmp_path / "clean.txt").write_text("nothing here")
    other = "another-secret-value-fedcba9876543210"
    (tmp_path / "c.txt").write_text(other)
    found = tree_leaks({"tsig": NEEDLE, "acme": other}, tmp_path)
    assert sorted(found) == sorted([f"tsig in {tmp_path / 'a.json'}", f"tsig in {tmp_path / 'b.txt'}",
                                    f"acme in {tmp_path / 'c.txt'}"])  # fmt: skip


def test_skipped_files_symlinks_and_a_missing_tree_are_not_searched(tmp_path: Path) -> None:
    secret = tmp_path / "keys" / "tsig.key"
    secret.parent.mkdir()
    secret.write_text(NEEDLE)
    (tmp_path / "link").symlink_to(secret)
    assert tree_leaks({"tsig": NEEDLE}, tmp_path, skip={secret}) == []
    assert tree_leaks({"tsig": NEEDLE}, tmp_path / "absent") == []
    assert tree_leaks({"tsig": NEEDLE}, tmp_path) == [f"tsig in {secret}"]


def test_searching_a_large_tree_keeps_memory_near_one_chunk(tmp_path: Path) -> None:
    """320 MiB of files: a search that read the tree into memory (as it once did, 13 GB for a lab's
    full nodes) peaks above that; chunked, the searching process stays far below."""
    files = 40
    tree = tmp_path / "tree"
    tree.mkdir()
    block = b"A" * (8 * 1024 * 1024)
    for i in range(files):
        (tree / f"f{i}.bin").write_bytes(block)
    (tree / "last.txt").write_text(NEEDLE)
    code = (
        "import resource, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from tests.secret_poison import tree_leaks\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"found = tree_leaks({{'tsig': {NEEDLE!r}}}, __import__('pathlib').Path({str(tree)!r}))\n"
        "grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024\n"
        "print(len(found), grown)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    found, grown_mib = int(out[0]), int(out[1])
    assert found == 1
    assert grown_mib < 64, f"searching {files * 8} MiB grew the process by {grown_mib} MiB"
