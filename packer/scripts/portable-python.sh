#!/bin/sh
# A relocatable CPython with its own OpenSSL, built inside a Debian 11 root so that it needs glibc
# 2.31 at most. scripts/portable-python.py runs it there as root, with the verified sources in
# $SOURCES; it writes $OUT, a tar.gz of the installation. CPython finds its home from its
# executable's real path: the prefix it is configured with ($PREFIX, compiled in as a last
# resort) is never where it runs. Everything is built and installed below $WORK (DESTDIR), which
# no file of the result names; the shared objects it needs besides glibc's are copied into lib/
# with $ORIGIN run paths.
set -eu
: "${PREFIX:?}" "${WORK:?}" "${SOURCES:?}" "${OUT:?}" "${PATCHES_FROM:?}"
[ -f /entrypoints.py ] || { echo "portable-python: /entrypoints.py is missing" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
jobs=$(nproc)
dest=$WORK/dest
tree=$dest$PREFIX
rm -rf "$WORK" && mkdir -p "$WORK"
log() { echo "portable-python: $*"; }
quiet() { "$@" >"$WORK/step.log" 2>&1 || { tail -n 40 "$WORK/step.log" >&2; exit 1; }; }

log "build dependencies"
quiet apt-get -q update
quiet apt-get -q -y install --no-install-recommends build-essential perl patchelf xz-utils \
  libffi-dev zlib1g-dev libbz2-dev liblzma-dev libsqlite3-dev uuid-dev libexpat1-dev libcrypt-dev

# shared, copied into lib/ with the other libraries; no loadable modules (the providers are built
# in); certificates are the system's (/etc/ssl/certs)
log "OpenSSL"
tar -xzf "$SOURCES"/openssl_*.orig.tar.gz -C "$WORK"
cd "$WORK"/openssl-*/
quiet ./Configure linux-x86_64 shared no-module no-tests no-docs no-apps --prefix="$PREFIX/openssl" --libdir=lib \
  --openssldir=/etc/ssl
quiet make -j"$jobs" build_libs
quiet make install_dev DESTDIR="$dest"

# upstream's source as Debian ships it, with Debian's fixes (the series from PATCHES_FROM on;
# the patches before it change Debian's file layout)
log "CPython"
tar -xzf "$SOURCES"/python3.*.orig.tar.gz -C "$WORK"
tar -xJf "$SOURCES"/python3.*.debian.tar.xz -C "$WORK"
cd "$WORK"/Python-*/
sed -n "/^$PATCHES_FROM\$/,\$p" ../debian/patches/series | while read -r patch; do
  patch -p1 -s --forward <"../debian/patches/$patch" || { echo "patch $patch failed" >&2; exit 1; }
done
# a fix of the series (CVE-2026-4224) has pyexpat.c include an internal header; Debian builds the
# module from Modules/Setup with the core's flags, setup.py without them
sed -i '1i #ifndef Py_BUILD_CORE_MODULE\n#  define Py_BUILD_CORE_MODULE 1\n#endif' Modules/pyexpat.c
# (modules compiled by setup.py name their sources by absolute path in assertions: not the build's)
quiet ./configure --prefix="$PREFIX" --with-openssl="$dest$PREFIX/openssl" --with-openssl-rpath=auto \
  --with-system-expat --disable-test-modules --with-ensurepip=install CFLAGS="-ffile-prefix-map=$WORK/="
quiet make -j"$jobs"
# every module the bundle needs, or the lines of make's report that say why not
./python -B -c 'import ssl, _hashlib, pyexpat, sqlite3, ctypes, lzma, bz2, zlib, _uuid, _decimal' \
  || { grep -A6 -E "Failed to build|necessary bits|not found" "$WORK/step.log" >&2; exit 1; }
quiet make install DESTDIR="$dest"

log "make it relocatable"
cd "$tree"
version=$(bin/python3 -B -c 'import sys; print("%d.%d" % sys.version_info[:2])')
stdlib=lib/python$version
rm -rf "$stdlib"/test "$stdlib"/idlelib "$stdlib"/tkinter "$stdlib"/turtledemo "$stdlib"/turtle.py \
  "$stdlib"/lib2to3/tests "$stdlib"/ctypes/test "$stdlib"/unittest/test "$stdlib"/sqlite3/test \
  "$stdlib"/config-"$version"-* "$stdlib"/lib-dynload/nis.* "$stdlib"/lib-dynload/xxlimited* \
  lib/libpython*.a lib/pkgconfig bin/idle* bin/2to3* bin/pydoc* bin/python*-config share/man
ln -sf python3 bin/python
# pip's scripts: a shebang that finds python3 beside them (src/portable/entrypoints.py)
bin/python3 -B /entrypoints.py bin >/dev/null
# build-time values (where headers and libraries were, to compile extensions: never done from the
# bundle); sys.prefix and the install schemes come from where it is at run time
sed -i "s|$dest||g; s|$WORK|{build}|g" "$stdlib"/_sysconfigdata_*.py
# shared objects the build linked besides glibc's, copied beside libpython's place
glibc='^(linux-vdso|libc|libm|libdl|libpthread|librt|libutil|libresolv|ld-linux-x86-64)\.so'
find bin "$stdlib"/lib-dynload -type f | while read -r elf; do
  [ "$(head -c 4 "$elf" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
  ldd "$elf" | awk '$3 ~ /^\// {print $1, $3}' | while read -r name path; do
    echo "$name" | grep -Eq "$glibc" && continue
    [ -e "lib/$name" ] || cp -L "$path" "lib/$name"
  done
done
for elf in "$stdlib"/lib-dynload/*.so; do patchelf --set-rpath '$ORIGIN/../..' "$elf"; done
for lib in lib/*.so*; do patchelf --set-rpath '$ORIGIN' "$lib"; done
patchelf --set-rpath '$ORIGIN/../lib' bin/python"$version"
rm -rf openssl  # its libraries are in lib/ now; its headers were for the build
find . -type f \( -name '*.so*' -o -name "python$version" \) -exec strip --strip-unneeded {} +
# byte code once, naming its sources relative to the installation, not the build's folder
find . -name __pycache__ -type d -prune -exec rm -rf {} +
bin/python3 -B -m compileall -q -f -j"$jobs" -s "$tree" "$stdlib" >/dev/null

log "archive"
tar --owner=0 --group=0 --numeric-owner -czf "$OUT.tmp" -C "$tree" .
mv "$OUT.tmp" "$OUT"
log "done: $(du -sh "$tree" | cut -f1) installed, $(du -h "$OUT" | cut -f1) archived"
