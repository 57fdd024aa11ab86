"""Secrets in the fleet repository: age-encrypted, never plain text.

A secret NAME is two files in `secrets/`:
- `NAME.age`: the value, encrypted with age (pyrage) to every recipient below;
- `NAME.recipients`: those recipients, one per line (public keys, safe to commit): the operators'
  keys from fleet.json `secret_recipients` (age `age1…` or `ssh-ed25519 …`) and the pinned SSH host
  key (`ssh.host_key`, ssh-ed25519) of every host whose services declare a file with `"secret": NAME`.
  So a node's host key decrypts exactly its own secrets.

Decrypting (plan, apply, `mcfleet secret show`) needs an operator identity: the file named by
`$MCFLEET_AGE_IDENTITY` (an age identity file with `AGE-SECRET-KEY-…` lines, or an OpenSSH
ed25519 private key), default `~/.config/mcfleet/age.key`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mcfleet.errors import InputError
from mcfleet.fleet.load import LoadedFleet
from mcfleet.util.files import atomic_write_text
from mcfleet.util.private_file import CredentialRefused, read_credential

SECRETS_DIR = "secrets"
SECRET_NAME_RE = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
IDENTITY_ENV = "MCFLEET_AGE_IDENTITY"
DEFAULT_IDENTITY = "~/.config/mcfleet/age.key"


def secret_paths(root: Path, name: str) -> tuple[Path, Path]:
    if not re.match(SECRET_NAME_RE, name):
        raise InputError(f"{name!r} is not a secret name", hint="lower-case letters, digits, '.', '_', '-'")
    folder = root / SECRETS_DIR
    return folder / f"{name}.age", folder / f"{name}.recipients"


def users_of(loaded: LoadedFleet, name: str) -> list[str]:
    """The hosts whose active services declare a file with this secret."""
    return sorted(
        host
        for host, e in loaded.hosts.items()
        if any(f.secret == name for svc in e.services if svc.active for f in svc.files)
    )


def host_recipient(loaded: LoadedFleet, host: str) -> str | None:
    key = loaded.hosts[host].host.ssh.host_key
    return key if key and key.startswith("ssh-ed25519 ") else None


def wanted_recipients(loaded: LoadedFleet, name: str) -> list[str]:
    operators = list(loaded.fleet.secret_recipients) if loaded.fleet else []
    hosts = [r for h in users_of(loaded, name) if (r := host_recipient(loaded, h))]
    return sorted(set(operators) | set(hosts))


def recorded_recipients(root: Path, name: str) -> list[str] | None:
    """The recipients NAME.age was encrypted to, or None when the secret does not exist."""
    _, rec = secret_paths(root, name)
    try:
        return [line.strip() for line in rec.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return None


def _age() -> Any:
    """pyrage, imported when a secret is encrypted or decrypted (`validate` reads only the recipient files)."""
    import pyrage  # type: ignore[import-untyped]  # no type information shipped

    return pyrage


def declared_secrets(loaded: LoadedFleet) -> list[str]:
    names = {f.secret for e in loaded.hosts.values() for svc in e.services for f in svc.files if f.secret}
    on_disk = {p.stem for p in (loaded.root / SECRETS_DIR).glob("*.age")}
    return sorted(names | on_disk)


def parse_recipient(text: str) -> tuple[Any, str | None]:
    """(the age recipient `text` is, None), or (None, why it is none: not an age1… or ssh-ed25519 key, or not
    a valid one).  Encrypting and validate's secret-recipient-invalid both read recipients through this."""
    if not text.startswith(("age1", "ssh-ed25519 ")):
        return None, "it is neither an age key (age1…) nor an ssh-ed25519 key"
    pyrage = _age()
    kind = pyrage.x25519 if text.startswith("age1") else pyrage.ssh
    try:
        return kind.Recipient.from_str(text), None
    except pyrage.RecipientError as exc:
        return None, f"it is not a valid key: {exc}"


def _recipient(text: str) -> Any:
    recipient, why = parse_recipient(text)
    if why is not None:
        raise InputError(f"recipient {text[:40]}…: {why}")
    return recipient


def encrypt_secret(loaded: LoadedFleet, name: str, value: bytes) -> list[str]:
    """Write NAME.age (value encrypted to its wanted recipients) and NAME.recipients; return them."""
    recipients = wanted_recipients(loaded, name)
    if not recipients:
        raise InputError(
            f"secret {name} has no recipient",
            location="fleet.json#/secret_recipients",
            hint="add the operators' age public keys (age-keygen -y) to fleet.json secret_recipients",
        )
    age, rec = secret_paths(loaded.root, name)
    age.parent.mkdir(parents=True, exist_ok=True)
    data = _age().encrypt(value, [_recipient(r) for r in recipients])
    tmp = age.with_name(f".{age.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(age)
    atomic_write_text(rec, "".join(f"{r}\n" for r in recipients))
    return recipients


def identities(path: Path | None = None) -> list[Any]:
    """The keys of the operator's identity file: `path`, else $MCFLEET_AGE_IDENTITY, else the default."""
    path = path or Path(os.environ.get(IDENTITY_ENV) or DEFAULT_IDENTITY).expanduser()
    try:  # it decrypts every secret of the fleet: `read_credential` refuses one others can read or replace
        text = read_credential(path, "age identity").decode()
    except CredentialRefused as exc:
        raise InputError(exc.message, hint=exc.hint) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"no operator identity to decrypt secrets: {path}: {getattr(exc, 'strerror', None) or 'not text'}",
            hint=f"set ${IDENTITY_ENV} to your age identity file (age-keygen) or ssh ed25519 private key",
        ) from None
    pyrage = _age()
    if "OPENSSH PRIVATE KEY" in text:
        return [pyrage.ssh.Identity.from_buffer(text.encode())]
    keys = [line.strip() for line in text.splitlines() if line.strip().startswith("AGE-SECRET-KEY-")]
    if not keys:
        raise InputError(f"{path} holds no AGE-SECRET-KEY- line nor an OpenSSH private key")
    return [pyrage.x25519.Identity.from_str(k) for k in keys]


def read_sealed(root: Path, name: str) -> bytes:
    """The encrypted bytes of secret `name` (secrets/NAME.age)."""
    age, _ = secret_paths(root, name)
    try:
        return age.read_bytes()
    except FileNotFoundError:
        raise InputError(
            f"secret {name} does not exist ({SECRETS_DIR}/{name}.age)", hint=f"mcfleet secret set {name}"
        ) from None


def decrypt_secret(root: Path, name: str, keys: list[Any] | None = None) -> bytes:
    return decrypt_sealed(name, read_sealed(root, name), keys)


def decrypt_sealed(name: str, data: bytes, keys: list[Any] | None = None) -> bytes:
    """The value of secret `name` from its encrypted bytes, with `keys` (default: the operator's identity)."""
    pyrage = _age()
    try:
        value: bytes = pyrage.decrypt(data, keys if keys is not None else identities())
    except pyrage.DecryptError:
        raise InputError(
            f"cannot decrypt secret {name} with your identity",
            hint="your key must be in fleet.json secret_recipients and the secret rekeyed by an operator "
            f"who can decrypt it (mcfleet secret rekey {name})",
        ) from None
    return value


def secret_states(loaded: LoadedFleet) -> list[dict[str, Any]]:
    """Each secret with who uses it, whom it is encrypted to and what needs doing, from the recipient
    files alone (no identity, never a value).

    state: "ok"; "missing" (a service uses it, NAME.age does not exist); "host-key" (a host using it
    has no pinned ssh-ed25519 host key to encrypt it to); "rekey" (its recipients are not today's: a
    host key or an operator changed); "unused" (no active service uses it).
    """
    used_by: dict[str, list[str]] = {}
    for host, entry in sorted(loaded.hosts.items()):
        for svc in entry.services:
            for name in sorted({f.secret for f in svc.files if f.secret and svc.active}):
                used_by.setdefault(name, []).append(f"{host}/{svc.name}")
    rows = []
    for name in declared_secrets(loaded):
        recorded = recorded_recipients(loaded.root, name)
        wanted = wanted_recipients(loaded, name)
        exists = (loaded.root / SECRETS_DIR / f"{name}.age").exists()
        lacking = sorted(set(wanted) - set(recorded or [])) if exists else []
        extra = sorted(set(recorded or []) - set(wanted))
        no_key = [host for host in users_of(loaded, name) if host_recipient(loaded, host) is None]
        if name not in used_by:
            state = "unused"
        elif not exists:
            state = "missing"
        elif no_key:
            state = "host-key"
        else:
            state = "rekey" if lacking or extra or recorded is None else "ok"
        rows.append({"name": name, "state": state, "used_by": used_by.get(name, []), "recipients": recorded or [],
                     "not_encrypted_to": lacking, "no_longer_wanted": extra, "hosts_without_key": no_key})  # fmt: skip
    return rows


def missing_recipients(loaded: LoadedFleet) -> Iterator[tuple[str, str, str]]:
    """(secret, host, why) for every host that needs a secret it could not decrypt."""
    for name in declared_secrets(loaded):
        recorded = recorded_recipients(loaded.root, name)
        for host in users_of(loaded, name):
            key = host_recipient(loaded, host)
            if recorded is None:
                yield name, host, f"secret {name} does not exist ({SECRETS_DIR}/{name}.age)"
            elif key is None:
                yield name, host, f"{host} has no pinned ssh-ed25519 ssh.host_key to encrypt secret {name} to"
            elif key not in recorded:
                yield name, host, f"secret {name} is not encrypted to {host}'s host key"
