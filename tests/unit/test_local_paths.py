"""Files on the operator's machine named in fleet.json and host.json are relative to the fleet folder,
not to wherever mcfleet runs (fleet/local_paths.py)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from mcfleet.fleet.load import load_fleet
from tests.conftest import REPO

MINIMAL = REPO / "tests" / "data" / "fleets" / "minimal"


def _fleet(tmp_path: Path) -> Path:
    root = tmp_path / "fleet"
    shutil.copytree(MINIMAL, root)
    fleet = json.loads((root / "fleet.json").read_text())
    fleet["providers"] = {
        "dns": {"kind": "rfc2136", "server": "10.0.0.53", "key_name": "k", "key_file": "keys/tsig.secret"},
        "cert": {"kind": "acme", "directory": "https://ca.example.test/dir", "account_key_file": "~/acme.pem",
                 "ca_file": "/etc/ssl/ca.pem"},
        "route": {"kind": "caddy", "admin_url": "unix:/srv/mc-proxy/caddy-admin.sock"},
        "route_l4": {"kind": "haproxy", "admin_socket": "/srv/mc-proxy/haproxy.sock", "map_file": "sni.map"},
    }  # fmt: skip
    (root / "fleet.json").write_text(json.dumps(fleet))
    host_file = root / "hosts" / "alpha" / "host.json"
    host = json.loads(host_file.read_text())
    host["ssh"] |= {"identity_file": "keys/deploy_ed25519", "known_hosts": "known_hosts"}
    host["ssh"].pop("host_key", None)
    host["nix"] = {"signing_key_file": "keys/nix-signing.sec"}
    host_file.write_text(json.dumps(host))
    return root


def test_relative_local_files_are_the_fleet_folders_wherever_mcfleet_runs(tmp_path: Path) -> None:
    root = _fleet(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    before = Path.cwd()
    os.chdir(elsewhere)
    try:
        loaded = load_fleet(root)
    finally:
        os.chdir(before)
    assert not loaded.findings, [f.format() for f in loaded.findings]
    assert loaded.fleet is not None
    providers = loaded.fleet.providers
    assert providers.dns is not None and providers.dns.key_file == str(root.resolve() / "keys" / "tsig.secret")
    assert providers.cert is not None and providers.cert.account_key_file == "~/acme.pem"  # the home: as written
    assert providers.cert.ca_file == "/etc/ssl/ca.pem"  # absolute: as written
    # paths on the nodes are the nodes' own: not made the operator's
    assert providers.route_l4 is not None and getattr(providers.route_l4, "map_file", None) == "sni.map"
    alpha = loaded.hosts["alpha"].host
    assert alpha.ssh.identity_file == str(root.resolve() / "keys" / "deploy_ed25519")
    assert alpha.ssh.known_hosts == str(root.resolve() / "known_hosts")
    assert alpha.nix.signing_key_file == str(root.resolve() / "keys" / "nix-signing.sec")
