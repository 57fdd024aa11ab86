"""pyinfra deploy (run with --dry): gather the facts `mcfleet plan` gathers, pyinfra's way.

Built-in facts where pyinfra has them, `Command` for the rest; nothing is changed.
"""

from pyinfra import host
from pyinfra.facts.files import FindFiles, Sha256File
from pyinfra.facts.server import Arch, Command, Groups, Hostname, OsRelease, Users

host.get_fact(OsRelease)
host.get_fact(Arch)
host.get_fact(Hostname)
host.get_fact(Users)
host.get_fact(Groups)
host.get_fact(Command, command="getent passwd 850 || true")
host.get_fact(Command, command="cat /etc/resolv.conf")
host.get_fact(Sha256File, path="/srv/mcp/mcp-agent")
host.get_fact(Command, command="systemctl is-active mcp-agent.service 2>/dev/null || echo no-systemd")
host.get_fact(Command, command="readlink /run/current-system || true")
host.get_fact(Command, command="cat /srv/mcp/mcfleet-state.json 2>/dev/null || true")
host.get_fact(FindFiles, path="/srv/mc-proxy/certs", fname="*.pem")
