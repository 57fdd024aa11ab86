#!/usr/bin/env bash
# The main job on the built-in lab fleet, from a fresh Debian 12 machine (root):
# set up, bring up a real local fleet (2 network-namespace nodes + 2 systemd nodes, Knot,
# Pebble, Caddy, HAProxy), validate it, plan, apply, apply again (converged: nothing sent),
# and show every agent.  The lab stays up afterwards for you to explore:
#   mcfleet lab status --dir /var/tmp/mcfleet-lab   ·   mcfleet lab down --dir /var/tmp/mcfleet-lab
# The fast (namespace) nodes do not boot systemd, so plan and apply target the systemd
# nodes (@full); `mcfleet -C /var/tmp/mcfleet-lab plan` on all of them shows the refusal for the others.
# The lab lives outside this checkout: this repository is a fleet folder, and a lab never nests in one.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-/var/tmp/mcfleet-lab}
M=.venv/bin/mcfleet

./scripts/setup.sh
$M lab down --dir "$DIR" >/dev/null 2>&1 || true   # idempotent: a previous demo's lab goes first
$M lab up --nodes 2 --full 2 --dir "$DIR"
$M -C "$DIR" validate
$M -C "$DIR" plan --on @full
$M -C "$DIR" apply --on @full --yes
echo "--- second apply: the fleet has converged, nothing is sent"
$M -C "$DIR" apply --on @full --yes
$M -C "$DIR" agent status --on @full
echo "--- through the edge: the last full node becomes the edge; the first runs three programs with routes"
eval "$(.venv/bin/python -m mcfleet.lab.edgedemo "$DIR")"   # sets EDGE WORKER PUB INT SNI PEBBLE_ROOT SNI_CA
$M -C "$DIR" plan --on @full
$M -C "$DIR" apply --on @full --yes   # certs from Pebble, A records into Knot, routes into Caddy/HAProxy
curl -sS --resolve "$PUB:443:$EDGE" --cacert "$PEBBLE_ROOT" "https://$PUB/"      # public l7 via the edge
curl -sS --resolve "$INT:443:$WORKER" --cacert "$PEBBLE_ROOT" "https://$INT/"    # internal l7 on its node
curl -sS --resolve "$SNI:8443:$WORKER" --cacert "$SNI_CA" -o "$DIR/sni.html" "https://$SNI:8443/"  # l4: its own TLS
head -n 2 "$DIR/sni.html"
echo "lab is up: $M lab status --dir $DIR   ·   $M lab down --dir $DIR"
