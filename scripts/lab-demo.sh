#!/usr/bin/env bash
# The main job on the built-in lab fleet, from a fresh Debian 12 machine (root):
# set up, bring up a real local fleet (2 network-namespace nodes + 2 systemd nodes, Knot,
# Pebble, Caddy, HAProxy, and an OCI registry holding demo images), validate it, plan, apply —
# which deploys 3 services from the lab registry onto the 2 systemd nodes as rootless podman
# containers, in two boot stages — show each answering on its assigned port, apply again
# (converged: nothing sent), then bump one image tag and apply the update (only that container
# is replaced).  The lab stays up afterwards for you to explore:
#   mcfleet lab status --dir lab-fleet   ·   mcfleet lab down --dir lab-fleet
# The fast (namespace) nodes do not boot systemd, so plan and apply target the systemd
# nodes (@full); `mcfleet plan lab-fleet` on all of them shows the refusal for the others.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-lab-fleet}
M=$PWD/.venv/bin/mcfleet
STARTED=$(date +%s)

./scripts/setup.sh
$M lab down --dir "$DIR" >/dev/null 2>&1 || true   # idempotent: a previous demo's lab goes first
$M lab up --nodes 2 --full 2 --dir "$DIR"
$M validate "$DIR"
$M plan "$DIR" --on @full
$M apply "$DIR" --on @full --yes

# Each service answers with "<name> <version> port=<$PORT>" on the port mcfleet assigned to it,
# published on its node's lab address: curl it from this machine through the lab network.
answer_all() {
  for host_dir in "$DIR"/hosts/*/; do
    host=$(basename "$host_dir")
    for svc_file in "$host_dir"services/*.json; do
      [ -e "$svc_file" ] || continue
      svc=$(basename "$svc_file" .json)
      target=$(cd "$DIR" && $M render "$svc" --host "$host" | grep -o -- '-p 10\.[0-9.]*:[0-9]*:8080' | head -n1 | cut -d' ' -f2 | cut -d: -f1,2)
      printf '  %-6s on %-6s http://%-20s -> %s\n' "$svc" "$host" "$target/" "$(curl -s --max-time 5 "http://$target/")"
    done
  done
}
echo "--- the services answer on their assigned ports"
answer_all

echo "--- second apply: the fleet has converged, nothing is sent"
$M apply "$DIR" --on @full --yes
$M plan "$DIR" --on @full --detailed-exitcode

echo "--- an image update: hello 1 -> 2 (only that container is replaced)"
sed -i 's#/demo/hello:1"#/demo/hello:2"#' "$DIR"/hosts/*/services/hello.json
$M plan "$DIR" --on @full
$M apply "$DIR" --on @full --yes
answer_all

$M agent status --root "$DIR" @full
echo "demo done in $(( $(date +%s) - STARTED )) s; lab is up: $M lab status --dir $DIR   ·   $M lab down --dir $DIR"
