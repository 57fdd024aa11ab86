"""Rules about secrets (fleet/secrets.py).  Python-only: they read the secrets' recipient files,
which the pure-Nix validator does not see (it evaluates the JSON files only).

- secret-recipient-missing: a service declares a file with `"secret": NAME` and the host it is placed
  on cannot decrypt NAME: secrets/NAME.age does not exist, the host has no pinned ssh-ed25519
  `ssh.host_key`, or NAME.recipients does not list that key -> the service file's
  /files/<i>/secret.
- secret-recipient-invalid: an entry of fleet.json `secret_recipients` that `secret set`/`rekey` could not
  encrypt to (not an age `age1…` key nor an `ssh-ed25519 …` key, or not a valid one) ->
  fleet.json /secret_recipients/<i>.  The age library is imported only for a fleet that lists recipients
  (validate's start-up is benchmarked).
"""

from __future__ import annotations

from collections.abc import Iterator

from mcfleet.fleet.findings import Finding
from mcfleet.fleet.load import LoadedFleet
from mcfleet.fleet.models import Fleet
from mcfleet.fleet.secrets import missing_recipients, parse_recipient


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


def _short(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:40]}…"


def rule_secret_recipient_invalid(loaded: LoadedFleet, fleet: Fleet) -> Iterator[Finding]:
    for index, text in enumerate(fleet.secret_recipients):
        _parsed, why = parse_recipient(text)  # the age library is imported only here: a fleet with recipients
        if why is not None:
            yield Finding(
                "secret-recipient-invalid",
                "fleet.json",
                f"/secret_recipients/{index}",
                f"secret recipient {_short(text)!r}: {why}; no secret can be encrypted to it",
                "give the operator's public key whole: an age key (`age-keygen -y KEYFILE` prints it: age1…) "
                "or the ssh-ed25519 line of a .pub file ('ssh-ed25519 AAAA…')",
            )


RULES = [rule_secret_recipient_missing, rule_secret_recipient_invalid]
