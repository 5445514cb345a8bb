# The Vagrant box of the appliance: a base image booted with qemu, provisioned by
# ansible/site.yml (the same roles as every other target), cleaned, exported as a libvirt box.
# One file so that Packer 1.6.6 builds it in single-file mode (`make box`); newer Packer reads
# plugins.pkr.hcl beside it in directory mode. Per-OS values: *.pkrvars.hcl.

variable "os_name" {
  type        = string
  description = "Names the box and its files, e.g. ubuntu-24.04."
}

variable "iso_url" {
  type        = string
  description = "The base disk image (a cloud image or packer/base-image.sh's qcow2): URL or path."
}

variable "iso_checksum" {
  type        = string
  description = "Checksum of iso_url: \"sha256:...\", \"file:URL-of-SHA256SUMS\" or \"none\"."
}

variable "disk_size" {
  type        = string
  description = "Virtual size of the box's disk; the guest grows its root file system to it."
  default     = "20G"
}

variable "accelerator" {
  type        = string
  description = "qemu accelerator: kvm where it works, tcg (software emulation) elsewhere."
  default     = "kvm"
}

variable "cpus" {
  type    = number
  default = 2
}

variable "memory" {
  type        = number
  description = "MiB of the build VM."
  default     = 4096
}

variable "ssh_private_key_file" {
  type        = string
  description = "Vagrant's insecure private key, mode 0600 (the base image authorizes its public half)."
}

variable "ssh_timeout" {
  type    = string
  default = "30m"
}

variable "http_directory" {
  type        = string
  description = "Served to the guest during the build: cloud-init's NoCloud seed for cloud images; empty: none."
  default     = ""
}

variable "qemuargs" {
  type        = list(list(string))
  description = "Extra qemu arguments, e.g. the SMBIOS serial that points cloud-init at the seed."
  default     = []
}

variable "ansible_command" {
  type        = string
  description = "ansible-playbook to run (make box uses the project's venv)."
  default     = "ansible-playbook"
}

variable "playbook" {
  type        = string
  description = "The play that provisions the box."
  default     = "ansible/site.yml"
}

variable "ansible_extra_vars" {
  type        = list(string)
  description = "More -e arguments for the play, e.g. docker_images_load as JSON."
  default     = []
}

variable "extra_ca_certs" {
  type        = list(string)
  description = "PEM files the guest trusts while it is built (an intercepting proxy's CA); removed from the box."
  default     = []
}

variable "output_dir" {
  type        = string
  description = "Where the disk, the boxes and the generated credentials go."
  default     = "build/box"
}

variable "compression_level" {
  type        = number
  description = "gzip level of the box file; its disk is already compressed (disk_compression), so 1 costs nothing in size."
  default     = 1
}

locals {
  box_name    = "cwl-airflow-${var.os_name}-${trimspace(file(abspath("${path.root}/VERSION")))}"
  credentials = "${abspath(var.output_dir)}/credentials"
}

source "qemu" "box" {
  accelerator         = var.accelerator
  cpus                = var.cpus
  memory              = var.memory
  disk_image          = true
  iso_url             = var.iso_url
  iso_checksum        = var.iso_checksum
  disk_size           = var.disk_size
  format              = "qcow2"
  disk_interface      = "virtio-scsi"
  disk_discard        = "unmap"
  disk_detect_zeroes  = "unmap"
  disk_compression    = true
  net_device          = "virtio-net"
  headless            = true
  http_directory      = var.http_directory
  qemuargs            = var.qemuargs
  communicator        = "ssh"
  ssh_username        = "vagrant"
  ssh_private_key_file = var.ssh_private_key_file
  ssh_timeout         = var.ssh_timeout
  shutdown_command    = "sudo systemctl poweroff"
  output_directory    = "${var.output_dir}/${var.os_name}"
  vm_name             = "${local.box_name}.qcow2"
}

build {
  sources = ["source.qemu.box"]

  provisioner "shell" {
    execute_command  = "sudo env {{ .Vars }} sh -eu {{ .Path }}"
    environment_vars = ["EXTRA_CA_PEM_B64=${base64encode(join("", [for f in var.extra_ca_certs : file(f)]))}"]
    script           = "${path.root}/scripts/build-trust.sh"
  }

  provisioner "ansible" {
    command       = var.ansible_command
    playbook_file = var.playbook
    groups        = ["appliance"]
    host_alias    = "box"
    user          = "vagrant"
    use_proxy     = false
    ansible_env_vars = [
      "ANSIBLE_CONFIG=${abspath(path.root)}/../ansible/ansible.cfg",
      "ANSIBLE_HOST_KEY_CHECKING=False",
    ]
    extra_arguments = concat([
      "-e", "mysql_credentials_dir=${local.credentials}",
      "-e", "rabbitmq_credentials_dir=${local.credentials}",
      "-e", "airflow_credentials_dir=${local.credentials}",
      "-e", "@${abspath(path.root)}/box-vars.yml",
    ], flatten([for v in var.ansible_extra_vars : ["-e", v]]))
  }

  provisioner "shell" {
    execute_command = "sudo env {{ .Vars }} sh -eu {{ .Path }}"
    script          = "${path.root}/scripts/cleanup.sh"
  }

  post-processor "vagrant" {
    output               = "${var.output_dir}/${local.box_name}-{{ .Provider }}.box"
    vagrantfile_template = "${path.root}/box.Vagrantfile"
    compression_level    = var.compression_level
    keep_input_artifact  = true
  }
}
