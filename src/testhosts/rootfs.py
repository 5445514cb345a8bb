"""The golden Debian rootfs every test host starts from: made once by the project's one recipe
of a Debian root (scripts/debian-root.sh) with what systemd-nspawn needs, cached as a tarball.

The cache key hashes this module's source, the recipe, the suite, the mirrors and the package
list, so a change to the recipe builds a new rootfs instead of reusing a stale one.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from testhosts.settings import Settings
from testhosts.shell import log, run

DEBIAN_ROOT = Path(__file__).resolve().parents[2] / "scripts/debian-root.sh"

PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "python3-apt",
    "iproute2", "ca-certificates", "sudo", "procps",
)

# nspawn mounts the cgroup v1 controllers read-only; docker (runc) needs them writable. Inside
# the container's cgroup namespace their root is the container's own subtree, so this is contained.
CGROUP_RW_UNIT = """\
[Unit]
Description=Make cgroup v1 controllers writable for Docker (test-host harness)
DefaultDependencies=no
ConditionVirtualization=systemd-nspawn
ConditionPathIsMountPoint=/sys/fs/cgroup/cpu
Before=sysinit.target containerd.service docker.service
After=local-fs.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'mount -o remount,rw /sys/fs/cgroup; for d in /sys/fs/cgroup/*/; do mount -o remount,bind,rw "$d"; done'

[Install]
WantedBy=sysinit.target
"""

MASKED_UNITS = (
    "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer",
    "getty@tty1.service", "console-getty.service",
)


def cache_key(settings: Settings) -> str:
    h = hashlib.sha256(Path(__file__).read_bytes() + DEBIAN_ROOT.read_bytes())
    h.update("\0".join([settings.suite, settings.mirror, settings.security_mirror, *PACKAGES]).encode())
    return h.hexdigest()[:12]


def golden(settings: Settings) -> Path:
    """Return the unpacked golden rootfs, building or unpacking the cached tarball when needed."""
    key = cache_key(settings)
    root = settings.state_dir / "golden" / key
    if (root / "etc").is_dir():
        return root
    tarball = settings.cache_dir / f"debian-{settings.suite}-{key}.tar.zst"
    tmp = root.with_name(key + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if tarball.exists():
        log.info("unpacking cached rootfs %s", tarball)
        run(["tar", "--zstd", "--numeric-owner", "--xattrs", "-C", tmp, "-xf", tarball])
    else:
        _debootstrap(settings, tmp)
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        run(["tar", "--zstd", "--numeric-owner", "--xattrs", "-C", tmp, "-cf", f"{tarball}.tmp", "."])
        Path(f"{tarball}.tmp").rename(tarball)
    tmp.rename(root)
    return root


def _debootstrap(settings: Settings, root: Path) -> None:
    log.info("debootstrap %s into %s (about 2 minutes)", settings.suite, root)
    run([DEBIAN_ROOT, root, settings.suite, settings.mirror, settings.security_mirror, ",".join(PACKAGES),
         settings.cache_dir / "debootstrap-debs"])
    (root / "etc/systemd/system/nspawn-cgroup-rw.service").write_text(CGROUP_RW_UNIT)
    run(["systemctl", f"--root={root}", "enable", "systemd-networkd.service", "nspawn-cgroup-rw.service"])
    run(["systemctl", f"--root={root}", "mask", *MASKED_UNITS])
