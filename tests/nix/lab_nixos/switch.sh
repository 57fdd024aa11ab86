#!/bin/sh
# Lab stand-in for NixOS's switch-to-configuration: for mcfleet's part of a system it does
# what the real one does — records the goal it was asked, points /run/current-system at
# this system (switch, test), creates the mcp account (NixOS: users.users.mcp), links
# /srv/mcp/mcp-agent into the closure, installs the agent's unit and (re)starts it.
set -eu
SYS=@out@
goal="${1:-}"
mkdir -p /var/lib/mcfleet-lab
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $goal $SYS" >> /var/lib/mcfleet-lab/switch.log
case "$goal" in
    dry-activate) echo "would activate $SYS"; exit 0 ;;
    boot) exit 0 ;;
    switch|test) ;;
    *) echo "usage: switch-to-configuration switch|boot|test|dry-activate" >&2; exit 1 ;;
esac
getent group mcp >/dev/null || groupadd -g 850 mcp
getent passwd mcp >/dev/null || useradd -u 850 -g 850 -d /srv/mcp -M -s /usr/sbin/nologin mcp
install -d -m 0750 -o mcp -g mcp /srv/mcp
ln -sfn "$SYS/sw/bin/mcp-agent" /srv/mcp/.mcp-agent.lnk && mv -Tf /srv/mcp/.mcp-agent.lnk /srv/mcp/mcp-agent
ln -sfn "$SYS" /run/.current-system.lnk && mv -Tf /run/.current-system.lnk /run/current-system
cp "$SYS/etc/mcp-agent.service" /etc/systemd/system/.mcp-agent.service.tmp
mv -f /etc/systemd/system/.mcp-agent.service.tmp /etc/systemd/system/mcp-agent.service
systemctl daemon-reload
systemctl enable --quiet mcp-agent.service
systemctl restart mcp-agent.service
