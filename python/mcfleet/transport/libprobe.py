"""What asyncssh does at import that mcfleet never uses: library searches and X.509 support.

`asyncssh.crypto.pq` calls `ctypes.util.find_library("oqs")` and `("liboqs")` when it is
imported, `asyncssh.crypto.umac` `("nettle")`.  On Linux each call runs `ldconfig -p`, and
for a library that is not installed also `gcc` (which runs collect2 and ld) and `ld`: ten
processes and ~40 ms of CPU on every mcfleet command that opens SSH.  Here those names are
looked up as files in $LD_LIBRARY_PATH and the dynamic loader's default folders instead (no
process); every other name goes to the standard search.

`asyncssh.crypto.x509` (X.509 certificates as SSH keys, RFC 6187) imports `cryptography.x509`
and pyOpenSSL, ~10 ms.  OpenSSH has no X.509 keys (only PKIX-SSH does), and the host keys
mcfleet checks are OpenSSH keys (the host file's, or a known_hosts file's), so that module is
made to fail its import: asyncssh treats that as X.509 not installed (it offers no `x509v3-*`
algorithm and reads no X.509 line of a known_hosts file; everything else is unchanged).  Only asyncssh's
module is refused: `cryptography.x509` and pyOpenSSL import as usual for whoever needs them
(certificate facts, the ACME provider).

`install()` arms both (mcfleet/__init__.py): the lookup is replaced just before asyncssh's
crypto package is imported, whoever imports asyncssh first.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from importlib.abc import Loader  # at run time it would import importlib.resources (~2 ms)

CRYPTO_PACKAGE = "asyncssh.crypto"  # imports .pq, .umac and .x509
X509_MODULE = "asyncssh.crypto.x509"
QUICK_NAMES = frozenset({"oqs", "liboqs", "nettle"})


def library_dirs() -> list[str]:
    """Where the dynamic loader looks by default (multiarch folders first), then $LD_LIBRARY_PATH."""
    import sysconfig

    arch = sysconfig.get_config_var("MULTIARCH") or ""
    dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    for base in ("/usr/local/lib", "/lib", "/usr/lib"):
        dirs += [f"{base}/{arch}", base] if arch else [base]
    return [*dirs, "/lib64", "/usr/lib64"]


def find_as_file(name: str, dirs: Sequence[str]) -> str | None:
    """The path of lib<name>.so (else its highest-numbered lib<name>.so.N) in the first of `dirs` that has one."""
    stems = (f"lib{name}.so", f"{name}.so") if name.startswith("lib") else (f"lib{name}.so",)
    for folder in dirs:
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for stem in stems:
            found = sorted((e for e in entries if e == stem or e.startswith(stem + ".")), key=lambda e: (e != stem, e))
            if found:
                return os.path.join(folder, found[0] if found[0] == stem else found[-1])
    return None


def quick_find_library(standard: Callable[[str], str | None]) -> Callable[[str], str | None]:
    def find_library(name: str) -> str | None:
        if name in QUICK_NAMES:
            return find_as_file(name, library_dirs())
        return standard(name)

    return find_library


class _RefusedImport:
    """A loader that fails the import of its module; the importer drops it from sys.modules."""

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        raise ImportError("X.509 certificates as SSH keys are not used by mcfleet", name=module.__name__)


class _BeforeCrypto:
    """A meta path entry: it swaps the lookup in when asyncssh's crypto is about to load, then
    refuses its X.509 module (asyncssh catches the ImportError), then leaves the meta path."""

    @staticmethod
    def find_spec(name: str, path: Sequence[str] | None = None, target: ModuleType | None = None) -> ModuleSpec | None:
        if name == CRYPTO_PACKAGE:
            import ctypes.util

            if not getattr(ctypes.util.find_library, "mcfleet_quick", False):
                quick = quick_find_library(ctypes.util.find_library)
                quick.mcfleet_quick = True  # type: ignore[attr-defined]
                ctypes.util.find_library = quick  # type: ignore[assignment]  # same signature
        elif name == X509_MODULE:
            uninstall()
            return ModuleSpec(name, cast("Loader", _RefusedImport()))
        return None


def install() -> None:
    if CRYPTO_PACKAGE not in sys.modules and _BeforeCrypto not in sys.meta_path:
        sys.meta_path.insert(0, _BeforeCrypto)


def uninstall() -> None:
    if _BeforeCrypto in sys.meta_path:
        sys.meta_path.remove(_BeforeCrypto)
