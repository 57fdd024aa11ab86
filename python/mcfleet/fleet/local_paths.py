"""Files on the operator's machine named in fleet.json and host.json, made absolute against the fleet folder.

A relative path (e.g. "keys/tsig.secret", kept beside the fleet files and out of git) was read from
the current folder, so the same fleet planned differently by where mcfleet ran: `mcfleet -C FLEET
plan` from another folder could not read the TSIG key, and refused the records.  A path that starts
with `~` is the operator's home, as before; an absolute one stays as it is.  Paths on the nodes (the
proxies' sockets and map files) are not touched.
"""

from __future__ import annotations

from pathlib import Path

from mcfleet.fleet.models import Fleet, Host

# The providers' files read on the operator's machine: secrets and CA bundles.
PROVIDER_FILES = ("key_file", "token_file", "account_key_file", "ca_file")
PROVIDER_SLOTS = ("dns", "cert", "route", "route_l4")


def absolute(root: Path, value: str | None) -> str | None:
    if value is None or value.startswith(("/", "~")):
        return value
    return str(root / value)


def fleet_with_local_paths(fleet: Fleet, root: Path) -> Fleet:
    changed = {}
    for slot in PROVIDER_SLOTS:
        provider = getattr(fleet.providers, slot)
        if provider is None:
            continue
        given = {name: getattr(provider, name) for name in PROVIDER_FILES if hasattr(provider, name)}
        update = {name: made for name, value in given.items() if (made := absolute(root, value)) != value}
        if update:
            changed[slot] = provider.model_copy(update=update)
    if not changed:
        return fleet
    return fleet.model_copy(update={"providers": fleet.providers.model_copy(update=changed)})


def host_with_local_paths(host: Host, root: Path) -> Host:
    ssh = {n: absolute(root, getattr(host.ssh, n)) for n in ("known_hosts", "identity_file")}
    signing = absolute(root, host.nix.signing_key_file)
    update: dict[str, object] = {}
    if ssh != {n: getattr(host.ssh, n) for n in ssh}:
        update["ssh"] = host.ssh.model_copy(update=ssh)
    if signing != host.nix.signing_key_file:
        update["nix"] = host.nix.model_copy(update={"signing_key_file": signing})
    return host.model_copy(update=update) if update else host
