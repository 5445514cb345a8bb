# Debian 12 from the project's own base image (packer/base-image.sh; `make box` builds it
# first): no download, what builds and tests the box where no cloud image is reachable.
os_name      = "debian-12"
iso_url      = "build/base/debian-12.qcow2"
iso_checksum = "none"
disk_size    = "20G"
