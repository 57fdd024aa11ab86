#!/usr/bin/env bash
# The main job on the built-in lab fleet, from a fresh Debian 12 machine (root):
# set up, bring up a real local fleet (2 network-namespace nodes + 2 systemd nodes, Knot,
# Pebble, Caddy, HAProxy, and an OCI registry holding demo images), validate it, plan, apply —
# which deploys 3 services from the lab registry onto the 2 systemd nodes as rootless podman
# containers, in two boot stages — show each answering on its assigned port, apply again
# (converged: nothing sent), bump one image tag and apply the update (only that container is
# replaced), show every agent, then make the last systemd node the edge and curl through it.
# The lab stays up afterwards for you to explore:
#   mcfleet lab status --dir /var/tmp/mcfleet-lab   ·   mcfleet lab down --dir /var/tmp/mcfleet-lab
# The fast (namespace) nodes do not boot systemd, so plan and apply target the systemd
# nodes (@full); `mcfleet -C /var/tmp/mcfleet-lab plan` on all of them shows the refusal for the others.
# The lab lives outside this checkout: this repository is a fleet folder, and a lab never nests in one.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-/var/tmp/mcfleet-lab}
M=$PWD/.venv/bin/mcfleet
STARTED=$(date +%s)

./scripts/setup.sh
$M lab down --dir "$DIR" >/dev/null 2>&1 || true   # idempotent: a previous demo's lab goes first
$M lab up --nodes 2 --full 2 --login root,sudo --dir "$DIR"   # the second systemd node is reached as kyle with sudo, as the real fleet is
$M -C "$DIR" validate
$M -C "$DIR" plan --on @full
$M -C "$DIR" apply --on @full --yes

# Each service answers with "<name> <version> port=<$PORT>" on the port mcfleet assigned to it,
# published on its node's lab address: curl it from this machine through the lab network.
answer_all() {
  for host_dir in "$DIR"/hosts/*/; do
    host=$(basename "$host_dir")
    for svc_file in "$host_dir"services/*.json; do
      [ -e "$svc_file" ] || continue
      svc=$(basename "$svc_file" .json)
      target=$($M -C "$DIR" render "$svc" --host "$host" | grep -o -- '-p 10\.[0-9.]*:[0-9]*:8080' | head -n1 | cut -d' ' -f2 | cut -d: -f1,2)
      printf '  %-6s on %-6s http://%-20s -> %s\n' "$svc" "$host" "$target/" "$(curl -s --max-time 5 "http://$target/")"
    done
  done
}
echo "--- the services answer on their assigned ports"
answer_all

echo "--- second apply: the fleet has converged, nothing is sent"
$M -C "$DIR" apply --on @full --yes
$M -C "$DIR" plan --on @full --detailed-exitcode

echo "--- an image update: hello 1 -> 2 (only that container is replaced)"
sed -i 's#/demo/hello:1"#/demo/hello:2"#' "$DIR"/hosts/*/services/hello.json
$M -C "$DIR" plan --on @full
$M -C "$DIR" apply --on @full --yes
answer_all
$M -C "$DIR" agent status --on @full
echo "services deployed and updated in $(( $(date +%s) - STARTED )) s"

echo "--- through the edge: the last full node becomes the edge; the first runs three programs with routes"
eval "$(.venv/bin/python -m mcfleet.lab.edgedemo "$DIR")"   # sets EDGE WORKER PUB INT SNI PEBBLE_ROOT SNI_CA
$M -C "$DIR" plan --on @full
$M -C "$DIR" apply --on @full --yes   # certs from Pebble, A records into Knot, routes into Caddy/HAProxy
curl -sS --resolve "$PUB:443:$EDGE" --cacert "$PEBBLE_ROOT" "https://$PUB/"      # public l7 via the edge
curl -sS --resolve "$INT:443:$WORKER" --cacert "$PEBBLE_ROOT" "https://$INT/"    # internal l7 on its node
curl -sS --resolve "$SNI:8443:$WORKER" --cacert "$SNI_CA" -o "$DIR/sni.html" "https://$SNI:8443/"  # l4: its own TLS
head -n 2 "$DIR/sni.html"
echo "demo done in $(( $(date +%s) - STARTED )) s; lab is up: $M lab status --dir $DIR   ·   $M lab down --dir $DIR"
