"""Where the harness keeps its files and which network it uses, from TESTHOSTS_* variables."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from testhosts.facts import DEBIAN

DEFAULT_CA_DIR = "/usr/local/share/ca-certificates"


@dataclass(frozen=True)
class Settings:
    cache_dir: Path
    """Cached rootfs tarballs, a shared pip cache, the test docker image (TESTHOSTS_CACHE)."""
    state_dir: Path
    """Running testbeds: host roots, keys, inventories (TESTHOSTS_STATE)."""
    network: ipaddress.IPv4Network
    """Private network of the bridge; the build machine is its first address (TESTHOSTS_NET)."""
    bridge: str
    """Bridge interface name, at most 15 characters (TESTHOSTS_BRIDGE)."""
    suite: str = DEBIAN["suite"]
    mirror: str = DEBIAN["mirror"]
    security_mirror: str = DEBIAN["security_mirror"]
    extra_ca_dir: Path | None = None
    """CA certificates (*.crt) the hosts must trust in addition to the system ones, e.g. an
    intercepting proxy's. TESTHOSTS_EXTRA_CA_DIR; empty disables; default: the build
    machine's own local CAs, /usr/local/share/ca-certificates."""

    @classmethod
    def from_env(cls, env: os._Environ[str] | dict[str, str] = os.environ) -> Settings:
        bridge = env.get("TESTHOSTS_BRIDGE", "cwlbr0")
        if not 0 < len(bridge) <= 15:
            raise ValueError(f"TESTHOSTS_BRIDGE={bridge!r}: an interface name has 1 to 15 characters")
        ca_dir = env.get("TESTHOSTS_EXTRA_CA_DIR", DEFAULT_CA_DIR)
        return cls(
            cache_dir=Path(env.get("TESTHOSTS_CACHE", "/var/cache/cwl-airflow-appliance")),
            state_dir=Path(env.get("TESTHOSTS_STATE", "/var/tmp/cwl-airflow-testhosts")),
            network=ipaddress.IPv4Network(env.get("TESTHOSTS_NET", "10.231.0.0/24")),
            bridge=bridge,
            suite=env.get("TESTHOSTS_SUITE", cls.suite),
            mirror=env.get("TESTHOSTS_MIRROR", cls.mirror),
            security_mirror=env.get("TESTHOSTS_SECURITY_MIRROR", cls.security_mirror),
            extra_ca_dir=Path(ca_dir) if ca_dir else None,
        )

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return next(self.network.hosts())

    def extra_cas(self) -> list[Path]:
        if self.extra_ca_dir is None or not self.extra_ca_dir.is_dir():
            return []
        return sorted(self.extra_ca_dir.glob("*.crt"))
