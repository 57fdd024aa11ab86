#!/usr/bin/env bash
# One-shot, idempotent set-up of a fresh Debian 12 machine (root) for mcfleet:
# the apt packages the lab and the tests use, kernel bits the lab needs, and a
# venv in .venv with the pinned Python dependencies (requirements.lock).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3 python3-venv python3-dev gcc git
  openssh-server openssh-client sudo
  iproute2 iptables iputils-ping netcat-openbsd socat curl file binutils zstd openssl
  debootstrap systemd-container busybox-static
  podman runc uidmap slirp4netns fuse-overlayfs catatonit containernetworking-plugins docker-registry
  knot knot-dnsutils bind9 dnsutils pebble caddy haproxy dnsmasq-base
  qemu-user-static binfmt-support
  nix-bin
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${#missing[@]} apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# sshd refuses to start without its privilege-separation directory.
mkdir -p /run/sshd
# Each booted systemd (nspawn) node holds ~8 inotify instances; the default limit of 128 makes
# nodes fail to boot ("Failed to allocate manager object") once a few test sessions run at once.
cur=$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo 0)
[ "$cur" -ge 1024 ] || sysctl -q -w fs.inotify.max_user_instances=1024 || true
# arm64 nodes run through qemu-user: needs binfmt_misc (skipped with a reason where it cannot be had).
if [ -d /proc/sys/fs/binfmt_misc ]; then
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
  update-binfmts --enable qemu-aarch64 2>/dev/null || true
fi

PY=/usr/bin/python3
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
if ! cmp -s requirements.lock .venv/.installed-lock 2>/dev/null; then
  echo "setup: installing pinned Python dependencies"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.lock
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
  cp requirements.lock .venv/.installed-lock
fi
echo "setup: done"
