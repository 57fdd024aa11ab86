"""Rules about secrets (fleet/secrets.py).  Python-only: they read the secrets' recipient files,
which the pure-Nix validator does not see (it evaluates the JSON files only).

- secret-recipient-missing: a service declares a file with `"secret": NAME` and the host it is placed
  on cannot decrypt NAME: secrets/NAME.age does not exist, the host has no pinned ssh-ed25519
  `ssh.host_key`, or NAME.recipients does not list that key -> the service file's
  /files/<i>/secret.
"""

from __future__ import annotations

from collections.abc import Iterator

from mcfleet.fleet.findings import Finding
from mcfleet.fleet.load import LoadedFleet
from mcfleet.fleet.models import Fleet
from mcfleet.fleet.secrets import missing_recipients


def rule_secret_recipient_missing(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    for name, host, why in missing_recipients(loaded):
        entry = loaded.hosts[host]
        for index, svc in enumerate(entry.services):
            at = next((i for i, f in enumerate(svc.files) if f.secret == name), None)
            if at is None or not svc.active:
                continue
            if "does not exist" in why:
                hint = f"mcfleet secret set {name} (it is encrypted to the operators and the hosts that use it)"
            elif "no pinned" in why:
                hint = f"pin the host's ssh-ed25519 key in ssh.host_key, then mcfleet secret rekey {name}"
            else:  # the key is pinned: only the encryption is behind (the secret is older than its use here)
                hint = f"mcfleet secret rekey {name} (encrypts it again to the operators and every host that uses it)"
            yield Finding("secret-recipient-missing", loaded.rel(entry.service_path(index)), f"/files/{at}/secret",
                          why, hint, host=host)  # fmt: skip


RULES = [rule_secret_recipient_missing]
