"""asyncssh's import-time library searches run no process once mcfleet is imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mcfleet.transport.libprobe import find_as_file, quick_find_library

NO_PROCESS = (
    "import subprocess\n"
    "def refuse(self, *a, **k):\n"
    "    raise AssertionError(f'a process was started: {a[0] if a else k}')\n"
    "subprocess.Popen.__init__ = refuse\n"
)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)


def test_importing_asyncssh_after_mcfleet_starts_no_process() -> None:
    done = _python(NO_PROCESS + "import mcfleet.transport.ssh\nimport asyncssh.crypto.pq\n")
    assert done.returncode == 0, done.stderr
    # the standard search does start processes (ldconfig, gcc, ld): that is what is avoided
    plain = _python(NO_PROCESS + "import asyncssh\n")
    assert plain.returncode != 0 and "a process was started" in plain.stderr


def test_the_quick_lookup_finds_a_library_file_and_leaves_other_names_alone(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (second / "liboqs.so.5").write_bytes(b"")
    (second / "liboqs.so.6").write_bytes(b"")
    assert find_as_file("oqs", [str(first), str(second)]) == str(second / "liboqs.so.6")
    (first / "liboqs.so").write_bytes(b"")  # the unversioned name in an earlier folder wins
    assert find_as_file("oqs", [str(first), str(second)]) == str(first / "liboqs.so")
    assert find_as_file("liboqs", [str(second)]) == str(second / "liboqs.so.6")
    assert find_as_file("oqs", [str(tmp_path / "missing")]) is None

    asked: list[str] = []
    quick = quick_find_library(lambda name: asked.append(name) or "libc.so.6")
    assert quick("c") == "libc.so.6" and asked == ["c"]
    quick("oqs")
    assert asked == ["c"]  # answered from the folders, not by the standard search


def test_asyncssh_after_mcfleet_has_no_x509_keys_and_x509_still_imports_for_others() -> None:
    done = _python(
        "import sys, mcfleet.transport.ssh, asyncssh\n"
        "loaded = [m for m in ('cryptography.x509', 'OpenSSL', 'asyncssh.crypto.x509') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "algs = [a.decode() for a in asyncssh.public_key.get_x509_certificate_algs()]\n"
        "assert not algs, algs\n"
        "assert b'ssh-ed25519' in asyncssh.public_key.get_public_key_algs()\n"
        "from cryptography import x509\n"
        "import OpenSSL.crypto\n"
        "from mcfleet.transport import libprobe\n"
        "assert libprobe._BeforeCrypto not in sys.meta_path  # gone once asyncssh's crypto is loaded\n"
    )
    assert done.returncode == 0, done.stderr
    # without mcfleet first, asyncssh loads its X.509 support (what the refusal saves)
    plain = _python("import sys, asyncssh\nassert 'asyncssh.crypto.x509' in sys.modules\n")
    assert plain.returncode == 0, plain.stderr
