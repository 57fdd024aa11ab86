"""SSH keys of the lab: a client key and one host key per node (ed25519, made in-process)."""

from __future__ import annotations

from pathlib import Path

import asyncssh

from mcfleet.util.files import atomic_write_bytes


def make_key(path: Path) -> str:
    """Write an ed25519 private key (0600) and its .pub; return the public key 'ssh-ed25519 AAAA…'."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    atomic_write_bytes(path, key.export_private_key("openssh"), mode=0o600)
    public = key.export_public_key("openssh").decode().split()
    text = f"{public[0]} {public[1]}"
    atomic_write_bytes(path.with_name(path.name + ".pub"), (text + "\n").encode(), mode=0o644)
    return text


def read_public(path: Path) -> str:
    """'type base64' of a .pub file, without the comment (the form host.json pins)."""
    parts = path.read_text().split()
    return f"{parts[0]} {parts[1]}"


def make_account_key(path: Path) -> None:
    """The ACME account key (a secret file the fleet's cert provider reads; 0600)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    atomic_write_bytes(path, pem, mode=0o600)
