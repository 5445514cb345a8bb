#!/bin/sh
# The AppImage runtime (appimage/runtime.c), linked statically against Debian 12's libsquashfuse,
# libfuse3 and decompressors, so that it runs on any x86_64 Linux. scripts/appimage-runtime.py
# runs it as root in a Debian 12 root; it writes $OUT. Then the type-2 magic ("AI\2" at offset 8).
set -eu
: "${OUT:?}" "${RUNTIME_VERSION:?}"
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
log() { echo "appimage-runtime: $*"; }
quiet() { "$@" >/var/tmp/step.log 2>&1 || { tail -n 40 /var/tmp/step.log >&2; exit 1; }; }

log "build dependencies"
quiet apt-get -q update
quiet apt-get -q -y install --no-install-recommends gcc libc6-dev binutils libsquashfuse-dev libfuse3-dev \
  libzstd-dev liblzma-dev liblz4-dev zlib1g-dev

log "compiling"
# (a path cut at PATH_MAX fails where it is used: format truncation is no error here)
gcc -std=gnu11 -O2 -Wall -Wextra -Werror -Wno-format-truncation -static -DRUNTIME_VERSION="\"$RUNTIME_VERSION\"" -o "$OUT.tmp" /runtime.c \
  -lsquashfuse_ll -lsquashfuse -lfuse3 -lzstd -llzma -llz4 -lz -lpthread -ldl 2>/var/tmp/gcc.log ||
  { grep -v "statically linked applications requires at runtime" /var/tmp/gcc.log >&2; exit 1; }
strip --strip-all --keep-section=.upd_info --keep-section=.sha256_sig --keep-section=.payload_crc "$OUT.tmp"
printf 'AI\002' | dd of="$OUT.tmp" bs=1 seek=8 conv=notrunc status=none
mv "$OUT.tmp" "$OUT"
log "done: $(du -h "$OUT" | cut -f1)"
