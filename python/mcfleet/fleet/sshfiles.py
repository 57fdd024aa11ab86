"""OpenSSH files for a fleet: `known_hosts` from the pinned host keys, and an `ssh_config` naming each host.

Written to `<fleet>/.mcfleet/`, so plain OpenSSH reaches a node with the same strict host-key
check mcfleet itself applies:

    ssh -F <fleet>/.mcfleet/ssh_config rift
    ssh -o BatchMode=yes -o UserKnownHostsFile=<fleet>/.mcfleet/known_hosts root@10.0.0.1

A host that names a `known_hosts` file instead of a pinned key keeps using that file; a host
that trusts on first use gets the key its first connection recorded (fleet/first_use.py), and
before that no entry (OpenSSH then asks, as it would for any new host).
"""

from __future__ import annotations

import os
from pathlib import Path

from mcfleet.fleet.first_use import recorded_key, trusts_first_use
from mcfleet.fleet.load import HostEntry, LoadedFleet
from mcfleet.util.files import atomic_write_text
from mcfleet.util.statedir import state_dir

KNOWN_HOSTS = "known_hosts"
SSH_CONFIG = "ssh_config"


def _host_pattern(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def known_hosts_text(loaded: LoadedFleet) -> str:
    """One line per pinned host: every address (and port) with the pinned key."""
    lines = []
    for name in sorted(loaded.hosts):
        ssh = loaded.hosts[name].host.ssh
        key = ssh.host_key or _first_key(loaded.hosts[name])
        if key:
            patterns = ",".join(_host_pattern(a, ssh.port) for a in loaded.hosts[name].host.addresses)
            lines.append(f"{patterns} {' '.join(key.split()[:2])} {name}")
    return "".join(f"{line}\n" for line in lines)


def _first_key(entry: HostEntry) -> str | None:
    """The key a trust-on-first-use host showed the first time, once recorded (None: not yet, or unreadable)."""
    if not trusts_first_use(entry):
        return None
    try:
        return recorded_key(entry)
    except OSError:
        return None


def _known_hosts_for(entry: HostEntry, fleet_file: Path) -> str:
    ssh = entry.host.ssh
    if ssh.host_key or _first_key(entry):
        return str(fleet_file)
    if ssh.known_hosts:
        return os.path.expanduser(ssh.known_hosts)
    return "~/.ssh/known_hosts"


def ssh_config_text(loaded: LoadedFleet, known_hosts: Path) -> str:
    """A `Host <name>` block per host: address, port, user, key, jump and the strict host-key check."""
    blocks = []
    for name in sorted(loaded.hosts):
        entry = loaded.hosts[name]
        host, ssh = entry.host, entry.host.ssh
        asks = ssh.trust_on_first_use and not ssh.host_key and not _first_key(entry)  # no key known yet
        lines = [
            f"Host {name}",
            f"  HostName {host.addresses[0]}",
            f"  Port {ssh.port}",
            f"  User {ssh.user}",
            f"  UserKnownHostsFile {_known_hosts_for(entry, known_hosts)}",
            f"  StrictHostKeyChecking {'ask' if asks else 'yes'}",
        ]
        if ssh.host_key:
            kind = ssh.host_key.split()[0]  # ask for the pinned key's type, else sshd may offer another it holds
            lines.append(f"  HostKeyAlgorithms {'rsa-sha2-512,rsa-sha2-256' if kind == 'ssh-rsa' else kind}")
        if ssh.identity_file:
            lines += [f"  IdentityFile {os.path.expanduser(ssh.identity_file)}", "  IdentitiesOnly yes"]
        if ssh.jump:
            lines.append(f"  ProxyJump {ssh.jump}")
        blocks.append("\n".join(lines))
    return "# written by mcfleet from the host files; rewritten on every `mcfleet ssh`\n\n" + "\n\n".join(blocks) + "\n"


def write_ssh_files(loaded: LoadedFleet) -> tuple[Path, Path]:
    """Write `.mcfleet/known_hosts` and `.mcfleet/ssh_config` for the fleet; returns both paths."""
    folder = state_dir(loaded.root)
    known_hosts = folder / KNOWN_HOSTS
    config = folder / SSH_CONFIG
    atomic_write_text(known_hosts, known_hosts_text(loaded))
    atomic_write_text(config, ssh_config_text(loaded, known_hosts.resolve()))
    return known_hosts, config
