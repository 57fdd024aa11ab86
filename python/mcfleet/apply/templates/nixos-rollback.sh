#!/bin/sh
# mcfleet NixOS deadman ("magic rollback"), installed root-owned in @DIR@ by `mcfleet apply`.
#   nixos-rollback.sh TOKEN OLD_SYSTEM OLD_GENERATION NEW_GENERATION GOAL
# Armed as a transient systemd timer right before switch-to-configuration.  The apply
# confirms over a fresh SSH connection by deleting TOKEN (and stopping the timer) once
# the agent is healthy; if TOKEN still exists when this runs (the orchestrator vanished,
# the new system broke SSH, or the health check failed), the node goes back to
# OLD_SYSTEM by itself: the system profile returns to OLD_GENERATION, the failed
# NEW_GENERATION is deleted, and OLD_SYSTEM's switch-to-configuration activates it.
set -u
TOKEN="$1" OLD="$2" OLDGEN="$3" NEWGEN="$4" GOAL="$5"
NIX_ENV=@NIX_ENV@
PROFILE=@PROFILE@
LOG=@DIR@/nixos-deadman.log

[ -e "$TOKEN" ] || exit 0   # confirmed: nothing to do

if [ "$NEWGEN" != - ] && [ "$OLDGEN" != - ]; then
    "$NIX_ENV" -p "$PROFILE" --switch-generation "$OLDGEN"
    "$NIX_ENV" -p "$PROFILE" --delete-generations "$NEWGEN"
fi
how=switch
[ "$GOAL" = test ] && how=test
"$OLD/bin/switch-to-configuration" "$how"
status=$?
rm -f "$TOKEN"
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) deadman: no confirmation, rolled back to $OLD (generation $OLDGEN, switch exit $status)" >> "$LOG"
exit "$status"
