"""The one facts script run per host (one round trip), generated from the host file.

Plain POSIX sh (Debian's dash, NixOS's bash), read-only, no secrets: private
keys are never read (only `*.pem` files that are not `*key*`).  Output is a
series of sections, each introduced by a line `@@mcfleet-facts:<name>`; certificate
files inside the `certs` section each start with `@@mcfleet-file:<path>`.
`observe.parse.parse_facts` turns that text into `Facts`; nothing here parses.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from mcfleet.observe.manifest import MANIFEST_PATH

SECTION = "@@mcfleet-facts:"
FILE = "@@mcfleet-file:"
CERT_DIR = "/srv/mc-proxy/certs"


@dataclass(frozen=True)
class ScriptInputs:
    users: tuple[str, ...]
    uids: tuple[int, ...]
    gids: tuple[int, ...]
    agent_path: str
    agent_unit: str
    containers: bool = False  # ask podman (only when the host runs or ran services)
    cert_dir: str = CERT_DIR
    manifest_path: str = MANIFEST_PATH


def facts_script(inp: ScriptInputs) -> str:
    q = shlex.quote
    users = " ".join(q(u) for u in inp.users)
    uids = " ".join(str(u) for u in inp.uids)
    gids = " ".join(str(g) for g in inp.gids)
    agent, unit = q(inp.agent_path), q(inp.agent_unit)
    names_re = q("^(" + "|".join(inp.users) + "):") if inp.users else "'^$'"
    return f"""\
LC_ALL=C; export LC_ALL
s() {{ printf '\\n{SECTION}%s\\n' "$1"; }}
s os; cat /etc/os-release 2>/dev/null
s uname; uname -m; uname -n
s euid; id -u
s passwd; for k in {users} {uids}; do getent passwd "$k"; done
s group; for k in {users} {gids}; do getent group "$k"; done
s subuid; grep -E {names_re} /etc/subuid 2>/dev/null
s subgid; grep -E {names_re} /etc/subgid 2>/dev/null
s resolv; cat /etc/resolv.conf 2>/dev/null
s agent; if [ -f {agent} ]; then echo "sha256 $(sha256sum < {agent} | cut -d' ' -f1)"; \
[ -f {agent}.version ] && echo "version $(head -c 200 {agent}.version)"; else echo absent; fi
s unit; if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then \
echo "active $(systemctl is-active {unit} 2>/dev/null)"; echo "enabled $(systemctl is-enabled {unit} 2>/dev/null)"; \
else echo no-systemd; fi
s nixos; readlink /run/current-system 2>/dev/null
s manifest; cat {q(inp.manifest_path)} 2>/dev/null
s certs; for f in {q(inp.cert_dir)}/*.pem; do [ -f "$f" ] || continue; case "$f" in *key*) continue;; esac; \
printf '{FILE}%s\\n' "$f"; head -c 65536 "$f"; echo; done
s containers; if [ {1 if inp.containers else 0} = 1 ] && command -v podman >/dev/null 2>&1; then \
podman ps -a --format json 2>/dev/null || echo '[]'; else echo absent; fi
s end
"""
