"""The appliance's facts that the harness, the benchmarks and the tests share
(ansible/group_vars/all/appliance.yml, where the play reads them too)."""

from __future__ import annotations

from pathlib import Path

import yaml

FACTS_FILE = Path(__file__).resolve().parents[2] / "ansible/group_vars/all/appliance.yml"
FACTS: dict = yaml.safe_load(FACTS_FILE.read_text())

PUBLISHED_PORTS: dict[str, int] = FACTS["appliance_published_ports"]
"""Role variable of a port -> the port."""
API_PORT: int = PUBLISHED_PORTS["airflow_api_port"]
DAEMONS: list[str] = FACTS["appliance_daemons"]
VM: dict[str, int] = FACTS["appliance_vm"]
DEBIAN: dict[str, str] = FACTS["appliance_debian"]
"""suite, mirror, security_mirror"""

VERSION: str = (FACTS_FILE.parents[3] / "packer/VERSION").read_text().strip()
TARBALL: str = f"cwl-airflow-{VERSION}-linux-x86_64"
"""The portable tarball's name (and its top folder), without .tar.gz or .tar.zst"""
APPIMAGE: str = f"cwl-airflow-{VERSION}-x86_64.AppImage"
