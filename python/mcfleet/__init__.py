"""mcfleet: a NixOS-integrated declarative fleet toolkit."""

from mcfleet.transport.libprobe import install as _install_quick_liboqs_lookup

__version__ = "0.1.0"

_install_quick_liboqs_lookup()  # before any import of asyncssh (see transport/libprobe.py)
