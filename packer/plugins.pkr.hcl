# Plugins for Packer >= 1.10, read in directory mode (`packer init . && packer build
# -var-file=ubuntu-24.04.pkrvars.hcl .`). Packer 1.6.6 has them built in and rejects this block:
# there, build the single file box.pkr.hcl (`make box`).
packer {
  required_plugins {
    qemu = {
      source  = "github.com/hashicorp/qemu"
      version = ">= 1.1.0"
    }
    ansible = {
      source  = "github.com/hashicorp/ansible"
      version = ">= 1.1.0"
    }
    vagrant = {
      source  = "github.com/hashicorp/vagrant"
      version = ">= 1.1.0"
    }
  }
}
