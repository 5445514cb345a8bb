#!/usr/bin/env bash
# A clean Debian root, the one recipe of every root the project makes: the test hosts' and the
# portable build root (src/testhosts/rootfs.py) and the box's base image (packer/base-image.sh).
# minbase with PACKAGES, the release's apt sources, no machine identity (empty machine-id, no
# hostname, no ssh host keys: each machine makes its own) and no package cache or lists (their
# folder dated 1970, so that Ansible's apt cache_valid_time takes them as stale).
#   scripts/debian-root.sh ROOT SUITE MIRROR SECURITY_MIRROR PACKAGES [DEB_CACHE]
# PACKAGES: comma-separated; DEB_CACHE: debootstrap's package cache (none by default).
set -euo pipefail
usage="usage: $0 ROOT SUITE MIRROR SECURITY_MIRROR PACKAGES [DEB_CACHE]"
root=${1:?$usage} suite=${2:?$usage} mirror=${3:?$usage} security=${4:?$usage} packages=${5:?$usage}
options=(--variant=minbase --include="$packages")
if [ -n "${6:-}" ]; then mkdir -p "$6" && options+=(--cache-dir="$6"); fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
debootstrap "${options[@]}" "$suite" "$root" "$mirror" >"$log" 2>&1 || { tail -n 30 "$log" >&2; exit 1; }
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
SOURCES
: >"$root/etc/machine-id"
rm -f "$root/etc/hostname" "$root"/etc/ssh/ssh_host_*
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/*
touch -d @0 "$root/var/lib/apt/lists"
