#!/usr/bin/env bash
# The main job on the built-in lab fleet, from a fresh Debian 12 machine (root):
# set up, bring up a real local fleet (2 network-namespace nodes + 2 systemd nodes, Knot,
# Pebble, an OCI registry holding demo images, and HAProxy + Caddy inside each systemd node),
# make the last systemd node the edge, validate, plan, and ONE apply — which deploys 4 services
# from the lab registry as rootless podman containers on the first systemd node (in two boot
# stages), issues their certificates from Pebble, writes their A records into Knot and their
# routes into the proxies — then curl each container through the proxies with verified TLS:
# hello (public, through the edge), api (internal, on its node's proxy), sni (l4: HAProxy
# passes TLS through; the container ends it with its own certificate).  Then apply again
# (converged: nothing sent), bump one image tag (only that container is replaced; the edge
# serves the new version) and show every agent.  Last, reboot the worker, as rift was in the incident:
# nobody runs a command, its agent brings its services back stage by stage, and the edge serves them again.
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
# The last systemd node becomes the edge; the first (the worker) runs hello (public), api, db and sni.
eval "$(.venv/bin/python -m mcfleet.lab.edgedemo "$DIR")"   # sets EDGE WORKER WORKER_NAME PUB INT SNI PEBBLE_ROOT SNI_CA MCFLEET_AGE_IDENTITY KNOT KNOT_PORT
export MCFLEET_AGE_IDENTITY   # the lab operator's age key: decrypts sni's private key (secrets/sni-tls-key.age)
$M -C "$DIR" validate
$M -C "$DIR" plan --on @full
$M -C "$DIR" apply --on @full --yes   # containers, certs from Pebble, A records into Knot, routes into HAProxy/Caddy

# Each service answers with "<name> <version> port=<$PORT>" on the port mcfleet assigned to it,
# published on its node's lab address: curl it from this machine through the lab network.
answer_all() {
  for host_dir in "$DIR"/hosts/*/; do
    host=$(basename "$host_dir")
    for svc_file in "$host_dir"services/*.json; do
      [ -e "$svc_file" ] || continue
      svc=$(basename "$svc_file" .json)
      target=$($M -C "$DIR" render "$svc" --host "$host" | grep -o -- '-p 10\.[0-9.]*:[0-9]*:8080' | head -n1 | cut -d' ' -f2 | cut -d: -f1,2 || true)
      [ -n "$target" ] || continue   # sni speaks only TLS: it is curled through HAProxy below
      printf '  %-6s on %-6s http://%-20s -> %s\n' "$svc" "$host" "$target/" "$(curl -s --max-time 5 "http://$target/")"
    done
  done
}
echo "--- the services answer on their assigned ports"
answer_all

# Through the proxies, by name, with certificates that verify (the containers answer "<name> <version> ...").
# Each name is looked up in the zone's server (Knot), where the apply wrote its A record: hello's
# leads to the edge (its proxy alone carries the public route), api's and sni's to their node.
a_record() { dig +short +time=2 -p "$KNOT_PORT" "@$KNOT" "$1" A | head -n1; }
through_proxies() {
  local pub int sni
  pub=$(a_record "$PUB"); int=$(a_record "$INT"); sni=$(a_record "$SNI")
  printf '  %-22s A %-12s the edge (%s)      :443  -> %s\n' "$PUB" "$pub" "$EDGE" "$(curl -sS --max-time 10 --resolve "$PUB:443:$pub" --cacert "$PEBBLE_ROOT" "https://$PUB/")"
  printf '  %-22s A %-12s its node (%s)      :443  -> %s\n' "$INT" "$int" "$WORKER" "$(curl -sS --max-time 10 --resolve "$INT:443:$int" --cacert "$PEBBLE_ROOT" "https://$INT/")"
  printf '  %-22s A %-12s l4 passthrough (%s):8443 -> %s\n' "$SNI" "$sni" "$WORKER" "$(curl -sS --max-time 10 --resolve "$SNI:8443:$sni" --cacert "$SNI_CA" "https://$SNI:8443/")"
}
echo "--- by their names in Knot, through the proxies with verified TLS: Pebble certs for hello and api, sni's own cert"
through_proxies

echo "--- second apply: the fleet has converged, nothing is sent"
$M -C "$DIR" apply --on @full --yes
$M -C "$DIR" plan --on @full --detailed-exitcode

echo "--- an image update: hello 1 -> 2 (only that container is replaced)"
sed -i 's#/demo/hello:1"#/demo/hello:2"#' "$DIR"/hosts/*/services/hello.json
$M -C "$DIR" plan --on @full
$M -C "$DIR" apply --on @full --yes
answer_all
$M -C "$DIR" agent status --on @full
echo "--- the edge serves the new hello"
through_proxies

echo "--- $WORKER_NAME reboots: a new /run (podman's runtime state and mcp's session gone, as in the incident), and nobody runs a command"
$M lab reboot "$WORKER_NAME" --dir "$DIR"
for _ in $(seq 120); do   # the agent's boot sequence brings its services back, stage by stage
  $M -C "$DIR" status --on "$WORKER_NAME" > /dev/null 2>&1 && break
  sleep 0.5
done
$M -C "$DIR" status --on @full
through_proxies
echo "demo done in $(( $(date +%s) - STARTED )) s; lab is up: $M lab status --dir $DIR   ·   $M lab down --dir $DIR"
echo "the demo's variables (the age identity for apply, the curl targets) in another shell, changing nothing:"
echo "  eval \"\$(.venv/bin/python -m mcfleet.lab.edgedemo --values $DIR)\"; export MCFLEET_AGE_IDENTITY"
