# The portable tarball and the AppImage: ansible/portable.yml (the roles' install tasks) on a
# Debian 11 build host over ssh, then the project's archive script there (src/portable/archive.py:
# entry points, byte code, the gates, the tar.gz), then the AppImage of the same tree
# (src/portable/appimage.py, behind appimage/runtime.c), brought back and registered. `make portable` boots the build
# host from the test hosts' Debian 11 root and gives its address and key. One file, so that
# Packer 1.6.6 builds it in single-file mode, as the box.

variable "build_host" {
  type        = string
  description = "Address of the Debian 11 build host (root logs in with ssh_private_key_file)."
}

variable "ssh_private_key_file" {
  type = string
}

variable "python_archive" {
  type        = string
  description = "The bundle's CPython: the tar.gz scripts/portable-python.py built or found in its cache."
}

variable "appimage_runtime" {
  type        = string
  description = "The AppImage runtime scripts/appimage-runtime.py built or found in its cache."
}

variable "appimage_update_url" {
  type        = string
  description = "Where releases publish the AppImage's .zsync (written into its update information)."
  default     = "https://downloads.commonwl.org/cwl-airflow"
}

variable "ansible_command" {
  type        = string
  description = "ansible-playbook to run (make portable uses the project's venv)."
  default     = "ansible-playbook"
}

variable "output_dir" {
  type    = string
  default = "build/portable"
}

variable "appimage_output_dir" {
  type    = string
  default = "build/appimage"
}

locals {
  version       = trimspace(file(abspath("${path.root}/VERSION")))
  name          = "cwl-airflow-${local.version}-linux-x86_64"
  appimage_name = "cwl-airflow-${local.version}-x86_64"
  build_root    = "/opt/cwl-airflow-build"
  # what the scripts write, by where it goes: the tar.gz users download, the smaller tar.zst, the
  # AppImage, each with its checksum, and the AppImage's zsync file
  files = merge(
    { for f in flatten([for ext in ["tar.gz", "tar.zst"] : ["${local.name}.${ext}", "${local.name}.${ext}.sha256"]]) : f => var.output_dir },
    { for f in ["${local.appimage_name}.AppImage", "${local.appimage_name}.AppImage.sha256", "${local.appimage_name}.AppImage.zsync"] : f => var.appimage_output_dir },
  )
}

source "null" "build_host" {
  communicator         = "ssh"
  ssh_host             = var.build_host
  ssh_username         = "root"
  ssh_private_key_file = var.ssh_private_key_file
}

build {
  sources = ["source.null.build_host"]

  provisioner "ansible" {
    command       = var.ansible_command
    playbook_file = "${path.root}/../ansible/portable.yml"
    user          = "root"
    use_proxy     = false
    ansible_env_vars = [
      "ANSIBLE_CONFIG=${abspath(path.root)}/../ansible/ansible.cfg",
      "ANSIBLE_HOST_KEY_CHECKING=False",
    ]
    extra_arguments = [
      "-e", "portable_python_archive=${abspath(var.python_archive)}",
      "-e", "portable_build_root=${local.build_root}",
    ]
  }

  provisioner "shell" {
    inline = ["mkdir -p ${local.build_root}/tools"]
  }

  provisioner "file" {
    source      = "${path.root}/../src/portable"
    destination = "${local.build_root}/tools"
  }

  provisioner "file" {
    source      = var.appimage_runtime
    destination = "${local.build_root}/tools/appimage-runtime"
  }

  provisioner "shell" {
    inline = [
      "cd ${local.build_root}/tools && ${local.build_root}/cwl-airflow/python/bin/python3 -s -B -m portable.archive ${local.build_root}/cwl-airflow ${local.build_root}/out --name ${local.name}",
      "cd ${local.build_root}/tools && ${local.build_root}/cwl-airflow/python/bin/python3 -s -B -m portable.appimage ${local.build_root}/cwl-airflow ${local.build_root}/out --name ${local.appimage_name} --runtime ${local.build_root}/tools/appimage-runtime --version ${local.version} --update-url ${var.appimage_update_url}",
    ]
  }

  # one file at a time: Packer 1.6.6 downloads a folder into a folder of its own name
  dynamic "provisioner" {
    for_each = local.files
    labels   = ["file"]
    content {
      direction   = "download"
      source      = "${local.build_root}/out/${provisioner.key}"
      destination = "${provisioner.value}/${provisioner.key}"
    }
  }

  post-processors {
    post-processor "artifice" {
      files = [for f, dir in local.files : "${dir}/${f}"]
    }
    post-processor "checksum" {
      checksum_types = ["sha256"]
      output         = "${var.output_dir}/packer-{{ .ChecksumType }}.checksum"
    }
  }
}
