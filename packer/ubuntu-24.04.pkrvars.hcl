# Ubuntu 24.04 from Canonical's cloud image; cloud-init reads the NoCloud seed in
# http/ubuntu (the vagrant user) from Packer's HTTP server, found through the SMBIOS serial.
os_name        = "ubuntu-24.04"
iso_url        = "https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img"
iso_checksum   = "file:https://cloud-images.ubuntu.com/noble/current/SHA256SUMS"
disk_size      = "20G"
http_directory = "packer/http/ubuntu"
qemuargs       = [["-smbios", "type=1,serial=ds=nocloud-net;s=http://{{ .HTTPIP }}:{{ .HTTPPort }}/"]]
