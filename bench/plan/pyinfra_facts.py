"""pyinfra deploy (run with --dry): gather the facts `mcfleet plan` gathers, pyinfra's way.

Built-in facts where they cost the node what mcfleet's probe costs; `Command` for the rest
(pyinfra's `server.Users` fact walks every account with ~10 subprocesses each, ~0.3 s of node
CPU per host, while mcfleet asks `getent` for the pinned keys only: that would not be like for
like).  Nothing is changed.
"""

from pyinfra import host
from pyinfra.facts.files import FindFiles, Sha256File
from pyinfra.facts.server import Arch, Command, Hostname, OsRelease

host.get_fact(OsRelease)
host.get_fact(Arch)
host.get_fact(Hostname)
host.get_fact(Command, command="getent passwd mcp 850 || true")
host.get_fact(Command, command="getent group mcp 850 || true")
host.get_fact(Command, command="grep '^mcp:' /etc/subuid /etc/subgid || true")
host.get_fact(Command, command="cat /etc/resolv.conf")
host.get_fact(Sha256File, path="/srv/mcp/mcp-agent")
host.get_fact(Command, command="systemctl is-active mcp-agent.service 2>/dev/null || echo no-systemd")
host.get_fact(Command, command="readlink /run/current-system || true")
host.get_fact(Command, command="cat /var/lib/mcfleet/manifest.json 2>/dev/null || true")
host.get_fact(FindFiles, path="/srv/mc-proxy/certs", fname="*.pem")
