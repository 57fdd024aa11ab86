#!/usr/bin/env bash
# The main job on the built-in lab fleet, from a fresh Debian 12 machine (root):
# set up, bring up a real local fleet (2 network-namespace nodes + 2 systemd nodes, Knot,
# Pebble, Caddy, HAProxy), validate it, plan, apply, apply again (converged: nothing sent),
# and show every agent.  The lab stays up afterwards for you to explore:
#   mcfleet lab status --dir lab-fleet   ·   mcfleet lab down --dir lab-fleet
# The fast (namespace) nodes do not boot systemd, so plan and apply target the systemd
# nodes (@full); `mcfleet plan lab-fleet` on all of them shows the refusal for the others.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-lab-fleet}
M=.venv/bin/mcfleet

./scripts/setup.sh
$M lab down --dir "$DIR" >/dev/null 2>&1 || true   # idempotent: a previous demo's lab goes first
$M lab up --nodes 2 --full 2 --dir "$DIR"
$M validate "$DIR"
$M plan "$DIR" --on @full
$M apply "$DIR" --on @full
echo "--- second apply: the fleet has converged, nothing is sent"
$M apply "$DIR" --on @full
$M agent status --root "$DIR" @full
echo "lab is up: $M lab status --dir $DIR   ·   $M lab down --dir $DIR"
