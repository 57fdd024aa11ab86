#!/bin/sh
# mcfleet deadman ("magic rollback"), armed by `mcfleet apply` before it restarts the agent.
# Runs @DEADLINE@ s after arming unless the orchestrator confirmed by deleting the token
# (and stopping this timer) after its health check.  If the token still exists, the
# orchestrator vanished mid-activation: put the previous agent and unit back and restart.
# This script, the token, the binaries it restores and the helper it runs all live in
# root's own store (root-owned 0700): nothing here is read from a folder the agent's
# account can write.  The binary reaches the agent's path through the helper, which
# never follows a link; every replacement is temp + rename, so a crash leaves whole files.
set -u
TOKEN="$1"
STORE=@STORE@
BIN=@BIN@
UNIT_FILE=@UNIT_FILE@
UNIT=@UNIT@
LOG="$STORE/deadman.log"
SYSTEMCTL="${MCFLEET_SYSTEMCTL:-systemctl}"

[ -e "$TOKEN" ] || exit 0   # confirmed: nothing to do

if [ -f "$STORE/agent/prev" ]; then
    cp "$STORE/agent/prev" "$STORE/agent/current.tmp" && mv -f "$STORE/agent/current.tmp" "$STORE/agent/current"
    python3 "$STORE/mcfleet-node.py" put "$BIN" 0755 0:0 --from "$STORE/agent/current" >/dev/null
fi
if [ -f "$STORE/unit.prev" ]; then
    cp "$STORE/unit.prev" "$UNIT_FILE.rollback.tmp" && mv -f "$UNIT_FILE.rollback.tmp" "$UNIT_FILE"
fi
$SYSTEMCTL daemon-reload
$SYSTEMCTL reset-failed "$UNIT" 2>/dev/null
$SYSTEMCTL restart "$UNIT"
rm -f "$TOKEN"
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) deadman: no confirmation within @DEADLINE@ s, rolled back $BIN" >> "$LOG"
