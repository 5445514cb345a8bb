#!/usr/bin/env bash
# Builds a bootable Debian base image for the box without downloading a cloud image: a Debian
# root by the project's one recipe (scripts/debian-root.sh) in an MBR-partitioned disk, grub on
# BIOS, serial console, DHCP on the first NIC, sshd and a `vagrant` user (Vagrant's standard
# insecure public key, passwordless sudo), as qcow2.
# Needs root, debootstrap, sfdisk, qemu-img and Debian's vagrant package (for the key).
#   packer/base-image.sh OUT.qcow2 SUITE MIRROR SECURITY_MIRROR   (make base-image passes appliance_debian)
# Environment: BASE_DISK_SIZE (20G), BASE_DEB_CACHE (debootstrap's package cache; none by default),
# VAGRANT_PUBLIC_KEY (default: the key Debian's vagrant package ships).
set -euo pipefail
usage="usage: $0 OUT.qcow2 SUITE MIRROR SECURITY_MIRROR"
out=${1:?$usage} suite=${2:?$usage} mirror=${3:?$usage} security=${4:?$usage}
size=${BASE_DISK_SIZE:-20G}
key=${VAGRANT_PUBLIC_KEY:-$(ls /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub 2>/dev/null | head -n1)}
[ -r "$key" ] || { echo "base-image: no Vagrant public key; install Debian's vagrant package or set VAGRANT_PUBLIC_KEY" >&2; exit 1; }
packages=linux-image-amd64,grub-pc,systemd-sysv,dbus,udev,ifupdown,isc-dhcp-client,rsync,kmod,openssh-server,sudo,python3,python3-apt,ca-certificates,iproute2,procps,e2fsprogs

work=$(mktemp -d "${out%/*}/.base-image.XXXX")
raw=$work/disk.raw
mnt=$work/root
loop=
cleanup() {
  for m in dev/pts dev proc sys ""; do mountpoint -q "$mnt/$m" && umount "$mnt/$m"; done
  [ -n "$loop" ] && losetup -d "$loop"
  rm -rf "$work"
}
trap cleanup EXIT
in_root() { chroot "$mnt" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }

truncate -s "$size" "$raw"
echo 'start=2048, type=83, bootable' | sfdisk -q "$raw"
loop=$(losetup -P --show -f "$raw")
part=${loop}p1
[ -b "$part" ] || partx -a "$loop"  # the kernel's own scan can miss it
mkfs.ext4 -q -L root "$part"
mkdir "$mnt" && mount "$part" "$mnt"

echo "base-image: debootstrap $suite"
"$(dirname "$0")/../scripts/debian-root.sh" "$mnt" "$suite" "$mirror" "$security" "$packages" "${BASE_DEB_CACHE:-}"
for m in dev dev/pts proc sys; do mount --bind "/$m" "$mnt/$m"; done
in_root ssh-keygen -q -A  # the build VM's own; the box's cleanup removes them, each box makes its own

uuid=$(blkid -s UUID -o value "$part")
echo "UUID=$uuid / ext4 errors=remount-ro 0 1" >"$mnt/etc/fstab"
echo appliance >"$mnt/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 appliance\n' >"$mnt/etc/hosts"

# eth0 whatever the machine type (net.ifnames=0), DHCP from any hypervisor's NAT
printf 'auto lo\niface lo inet loopback\n\nallow-hotplug eth0\niface eth0 inet dhcp\n' >"$mnt/etc/network/interfaces"
: >"$mnt/etc/resolv.conf"

echo "base-image: grub"
cat >>"$mnt/etc/default/grub" <<'EOF'
GRUB_TIMEOUT=1
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8 net.ifnames=0 biosdevname=0"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --speed=115200"
EOF
in_root grub-install --target=i386-pc "$loop" 2>"$work/grub.log" || { cat "$work/grub.log" >&2; exit 1; }
in_root update-grub 2>"$work/grub.log" || { cat "$work/grub.log" >&2; exit 1; }
# without udev grub-mkconfig names the build's loop device; a booted system names it by UUID
sed -i "s|root=$part |root=UUID=$uuid |" "$mnt/boot/grub/grub.cfg"
grep -q "root=UUID=$uuid " "$mnt/boot/grub/grub.cfg"

in_root useradd --create-home --shell /bin/bash vagrant
install -d -m 0700 -o "$(in_root id -u vagrant)" -g "$(in_root id -g vagrant)" "$mnt/home/vagrant/.ssh"
install -m 0600 -o "$(in_root id -u vagrant)" -g "$(in_root id -g vagrant)" "$key" "$mnt/home/vagrant/.ssh/authorized_keys"
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' >"$mnt/etc/sudoers.d/vagrant"
chmod 0440 "$mnt/etc/sudoers.d/vagrant"
echo 'UseDNS no' >"$mnt/etc/ssh/sshd_config.d/vagrant.conf"

rm -rf "$mnt"/tmp/* "$mnt"/var/log/*.log
for m in dev/pts dev proc sys; do umount "$mnt/$m"; done
fstrim -v "$mnt"  # the loop device punches the freed blocks out of the sparse disk
umount "$mnt"
losetup -d "$loop" && loop=

echo "base-image: $out"
qemu-img convert -O qcow2 "$raw" "$out.tmp"
mv "$out.tmp" "$out"
