#!/usr/bin/env bash
# Installs what building and testing the appliance need, idempotently: the Debian/Ubuntu
# packages of the groups named (needs root when one is missing) and Python venvs with the pinned
# tools of requirements/dev.txt.
#   scripts/install-deps.sh [VENV [GROUP...]]     default VENV: .venv; no group: the venvs only
# Groups: hosts (the nspawn test hosts, and Packer for the portable build), box (the Vagrant box:
# qemu, the base image's partitioning, Vagrant's insecure key pair from Debian's vagrant).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv}
python=${PYTHON:-python3}
declare -A groups=(
  [hosts]="systemd-container debootstrap nftables iproute2 zstd openssh-client packer"
  [box]="packer qemu-system-x86 qemu-utils fdisk vagrant"
)
packages=(python3-venv)
for group in "${@:2}"; do
  [ -n "${groups[$group]:-}" ] || { echo "install-deps: no group $group (${!groups[*]})" >&2; exit 2; }
  read -ra more <<< "${groups[$group]}"
  packages+=("${more[@]}")
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  [ "$(id -u)" = 0 ] || { echo "install-deps: run as root to install: ${missing[*]}" >&2; exit 1; }
  echo "install-deps: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp=$venv/.requirements.sha256
want=$(sha256sum requirements/dev.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "install-deps: Python tools into $venv"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r requirements/dev.txt
  echo "$want" > "$stamp"
fi

# A second venv with what the cwl_airflow package imports (Airflow, cwltool), pinned like the
# appliance's, for its unit tests (tests/cwl_unit); the package itself comes from src/.
cwl_venv=$venv-cwl
airflow_version=$(sed -n 's/^airflow_version: "\(.*\)"/\1/p' ansible/roles/airflow/defaults/main.yml)
constraints=(ansible/roles/airflow/files/constraints-"$airflow_version"-py3.*.txt ansible/roles/cwl_airflow/files/constraints-cwl-airflow.txt)
stamp=$cwl_venv/.requirements.sha256
cwltest=$(sed -n 's/^CWLTEST = "\([^"]*\)".*/\1/p' src/testhosts/conformance.py)  # the conformance runner, one pin
# this script's own list of what goes into the venv counts too
want=$({ cat "${constraints[@]}" pyproject.toml requirements/dev.txt "$0"; echo "$cwltest"; } | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "install-deps: Airflow $airflow_version and cwltool into $cwl_venv"
  [ -x "$cwl_venv/bin/python" ] || "$python" -m venv "$cwl_venv"
  "$cwl_venv/bin/pip" install -q --disable-pip-version-check "apache-airflow[celery]==$airflow_version" cwltool \
    "pyjwt[crypto]" pyyaml "$(grep '^pytest==' requirements/dev.txt)" "$cwltest" "${constraints[@]/#/--constraint=}"
  echo "$want" > "$stamp"
fi
