#!/usr/bin/env python3
"""make portable (and make appimage): build/portable/cwl-airflow-VERSION-linux-x86_64.tar.gz (and
.tar.zst) and build/appimage/cwl-airflow-VERSION-x86_64.AppImage, each with its .sha256.

Each step says what it does as it runs: the bundle's CPython (scripts/portable-python.py) and the
AppImage runtime (scripts/appimage-runtime.py), both from their caches after the first build; a
Debian 11 build host booted from the test hosts' root, then `packer build packer/portable.pkr.hcl`
against it (ansible/portable.yml, the archive and AppImage scripts); then the host is removed.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import subprocess
import sys
from pathlib import Path

import yaml

from testhosts import Settings, Testbed

REPO = Path(__file__).resolve().parents[1]
FACTS = REPO / "ansible/group_vars/all/portable.yml"
HOST = "portable-build"
log = logging.getLogger("portable")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=REPO / "build/portable")
    parser.add_argument("--appimage-output-dir", type=Path, default=REPO / "build/appimage")
    parser.add_argument("--appimage-update-url", help="where releases publish the AppImage's .zsync")
    parser.add_argument("--keep-host", action="store_true", help="leave the build host running (to look into it)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    log.info("the bundle's CPython")
    python_archive = subprocess.run([sys.executable, REPO / "scripts/portable-python.py"], check=True,
                                    stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()[-1]
    log.info("the AppImage runtime")
    runtime = subprocess.run([sys.executable, REPO / "scripts/appimage-runtime.py"], check=True,
                             stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()[-1]
    suite = yaml.safe_load(FACTS.read_text())["portable_build_suite"]
    testbed = Testbed(HOST, dataclasses.replace(Settings.from_env(), suite=suite))
    testbed.down()
    log.info("booting the %s build host", suite)
    host = testbed.up([HOST])[0]
    try:
        log.info("packer build packer/portable.pkr.hcl")
        packer = subprocess.run(
            ["packer", "build", "-force", "-timestamp-ui", "-color=false",
             "-var", f"build_host={host.ip}", "-var", f"ssh_private_key_file={testbed.key}",
             "-var", f"python_archive={python_archive}", "-var", f"output_dir={args.output_dir}",
             "-var", f"appimage_runtime={runtime}", "-var", f"appimage_output_dir={args.appimage_output_dir}",
             *(["-var", f"appimage_update_url={args.appimage_update_url}"] if args.appimage_update_url else []),
             "-var", f"ansible_command={Path(sys.executable).with_name('ansible-playbook')}",
             REPO / "packer/portable.pkr.hcl"],
            cwd=REPO, env={**os.environ, "PACKER_CACHE_DIR": str(REPO / "build/packer_cache")})
        for appimage in args.appimage_output_dir.glob("*.AppImage"):  # Packer downloads files 0644
            appimage.chmod(0o755)
        return packer.returncode
    finally:
        if not args.keep_host:
            testbed.down()


if __name__ == "__main__":
    sys.exit(main())
