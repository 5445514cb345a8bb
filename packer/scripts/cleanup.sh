# Makes the provisioned machine a box: no build-time trust, no caches, logs or machine
# identity, ssh host keys made at first boot, free space given back to the disk image.
export DEBIAN_FRONTEND=noninteractive

if ls /usr/local/share/ca-certificates/packer-build-*.crt >/dev/null 2>&1; then  # scripts/build-trust.sh
  rm /usr/local/share/ca-certificates/packer-build-*.crt
  update-ca-certificates --fresh >/dev/null
  rm -f /etc/pip.conf
  sed -i '/^NODE_EXTRA_CA_CERTS=/d; /^REQUESTS_CA_BUNDLE=/d' /etc/environment
fi

apt-get -qq -y autoremove --purge
apt-get -qq clean
rm -rf /var/lib/apt/lists/* /root/.cache /root/.npm /tmp/* /var/tmp/*
touch -d @0 /var/lib/apt/lists  # stale to a later play's apt cache_valid_time

# a cloud image configured its network for the build VM's MAC address and would wait for a
# datasource at every boot: hand the network to a MAC-independent DHCP config, stop cloud-init
if [ -d /etc/cloud ]; then
  touch /etc/cloud/cloud-init.disabled
  rm -rf /var/lib/cloud /etc/netplan/50-cloud-init.yaml
  printf 'network:\n  version: 2\n  ethernets:\n    nics:\n      match: {name: "en*"}\n      dhcp4: true\n' \
    >/etc/netplan/01-box.yaml
  chmod 0600 /etc/netplan/01-box.yaml
fi

journalctl --quiet --rotate && journalctl --quiet --vacuum-time=1s
find /var/log -type f -exec truncate -s 0 {} +
find /var/lib/airflow/logs -mindepth 1 -delete 2>/dev/null || true

echo uninitialized >/etc/machine-id  # a new one, and ConditionFirstBoot, at the first boot
rm -f /var/lib/dbus/machine-id /etc/ssh/ssh_host_*
cat >/etc/systemd/system/ssh-host-keys.service <<'UNIT'
[Unit]
Description=Generate the ssh host keys of a new machine
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=ssh.service
UNIT
systemctl enable --quiet ssh-host-keys.service

# discard reaches the image (virtio-scsi, discard=unmap); zero-fill where it does not
if ! fstrim --all; then
  dd if=/dev/zero of=/zero.fill bs=1M status=none || true
  rm -f /zero.fill
fi
sync
