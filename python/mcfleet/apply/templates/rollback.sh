#!/bin/sh
# mcfleet deadman ("magic rollback"), armed by `mcfleet apply` before it restarts the agent.
# Runs @DEADLINE@ s after arming unless the orchestrator confirmed by deleting the token
# (and stopping this timer) after its health check.  If the token still exists, the
# orchestrator vanished mid-activation: put the previous agent and unit back and restart.
# Every replacement is copy-to-temp + rename, so a crash here never leaves half a file.
set -u
TOKEN="$1"
BIN=@BIN@
UNIT_FILE=@UNIT_FILE@
UNIT=@UNIT@
LOG=@DIR@/mcfleet-deadman.log
SYSTEMCTL="${MCFLEET_SYSTEMCTL:-systemctl}"

[ -e "$TOKEN" ] || exit 0   # confirmed: nothing to do

restore() {  # restore <file>: <file>.prev -> <file>, atomically, keeping .prev
    if [ -e "$1.prev" ]; then
        cp -p "$1.prev" "$1.rollback.tmp" && mv -f "$1.rollback.tmp" "$1"
    fi
}
restore "$BIN"
restore "$UNIT_FILE"
$SYSTEMCTL daemon-reload
$SYSTEMCTL restart "$UNIT"
rm -f "$TOKEN"
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) deadman: no confirmation within @DEADLINE@ s, rolled back $BIN" >> "$LOG"
