"""A NixOS stand-in lab node for the NixOS-mechanics tier (no nixpkgs anywhere).

A full lab node (Debian booted with systemd under nspawn; nix-bin is in its rootfs, so it
has its own /nix/store) that says it is NixOS (/etc/os-release ID=nixos), and a fleet
folder whose flake builds a tiny system for it with builtins.derivation
(tests/nix/lab_nixos/): static busybox from this machine as the builder, a
switch-to-configuration that records its goal and (re)starts the agent, and the real
agent PEX as a store path of the closure.  `mcfleet apply` then runs its real NixOS path:
nix build → nix copy over SSH → system profile → switch → health → confirm.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from mcfleet.fleet.load import load_fleet
from mcfleet.nix.host_values import agent_unit_text
from tests.integration.apply_lab import Nodes

HERE = Path(__file__).resolve().parent / "lab_nixos"
REPO = Path(__file__).resolve().parents[2]
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static... or busybox: statically linked either way

NIX_DAEMON_UNIT = "[Unit]\nDescription=Nix daemon (as on NixOS)\n[Service]\nExecStart=/usr/bin/nix-daemon\n"
OS_RELEASE = 'NAME=NixOS\nID=nixos\nVERSION_ID="24.11"\nPRETTY_NAME="NixOS 24.11 (mcfleet lab stand-in)"\n'


def mcfleet_exe() -> str:
    exe = Path(sys.executable).parent / "mcfleet"
    return str(exe)


def make_nixos_node(fleet: Nodes, name: str, agent_pex: Path, variant: str = "good-1") -> Path:
    """Turn lab node `name` of `fleet` into a NixOS stand-in and give its fleet folder the flake."""
    fleet.sh(name, f"rm -f /etc/os-release && printf '%s' '{OS_RELEASE}' > /etc/os-release")
    assert fleet.sh(name, "for p in nix-env nix-store nix-daemon; do command -v $p; done | wc -l").stdout.strip() == "3"
    # NixOS runs the nix daemon; a non-root user's `nix copy` (trust signed / trusted-user) talks to it
    fleet.sh(name, f"printf '%s' '{NIX_DAEMON_UNIT}' > /etc/systemd/system/nix-daemon.service && "
                   "systemctl daemon-reload && systemctl start nix-daemon && "
                   "for i in $(seq 50); do [ -S /nix/var/nix/daemon-socket/socket ] && break; sleep 0.2; done && "
                   "[ -S /nix/var/nix/daemon-socket/socket ]")  # fmt: skip
    root = fleet.fleet_dir
    host_file = root / "hosts" / name / "host.json"
    data = json.loads(host_file.read_text())
    data["os"] = "nixos"
    data["description"] = f"lab NixOS stand-in (nix-bin store, tiny system) in netns {data['description']}"
    host_file.write_text(json.dumps(data, indent=2) + "\n")
    lab_dir = root / "lab-nixos"
    lab_dir.mkdir(exist_ok=True)
    shutil.copy2(HERE / "flake.nix", root / "flake.nix")
    for item in ("system.nix", "switch.sh"):
        shutil.copy2(HERE / item, lab_dir / item)
    write_blobs(root.parent / f"{root.name}-blobs", lab_dir / "blobs.json", agent_pex)
    (lab_dir / "mcfleet-path").write_text(mcfleet_exe())
    (root / "nix" / "lib").mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "nix" / "lib" / "deploy.nix", root / "nix" / "lib" / "deploy.nix")
    entry = load_fleet(root).hosts[name]
    (lab_dir / f"{name}.service").write_text(agent_unit_text(entry))
    set_variant(root, name, variant)
    return root


def write_blobs(folder: Path, pointer: Path, agent_pex: Path) -> None:
    """busybox and the agent (24 MB) in a folder of their own, outside the flake, which reaches it
    by path and NAR hash (a locked fetchTree, allowed in pure evaluation).  Nix copies a path
    flake's whole folder into its store at every evaluation that finds it changed, and every apply
    changes it (the journal under .mcfleet/): with the binaries inside, each apply of a test added
    24 MB to the store, 1.2 GB per test run.  This folder's copy is content-addressed: one."""
    import subprocess

    (folder / "busybox").mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, folder / "busybox" / "busybox")
    shutil.copy2(agent_pex, folder / "mcp-agent")
    argv = ["nix", "--extra-experimental-features", "nix-command", "hash", "path", str(folder)]
    nar_hash = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    pointer.write_text(json.dumps({"path": str(folder), "narHash": nar_hash}) + "\n")


def set_variant(root: Path, name: str, variant: str) -> None:
    """Which system the flake builds for `name` next: good-<n> (the real agent) or broken."""
    path = root / "lab-nixos" / "nodes.json"
    nodes = json.loads(path.read_text()) if path.exists() else {}
    nodes[name] = variant
    path.write_text(json.dumps(nodes, indent=2) + "\n")


def current_system(fleet: Nodes, name: str) -> str:
    return fleet.sh(name, "readlink /run/current-system || true").stdout.strip()


def switch_log(fleet: Nodes, name: str) -> list[str]:
    return fleet.sh(name, "cat /var/lib/mcfleet-lab/switch.log 2>/dev/null || true").stdout.splitlines()
