"""The testbeds' private network: a bridge on the build machine, NAT to the outside world.

The harness keeps its firewall rules in an nftables table of its own, so tearing down removes
exactly what it added. Hosts may start only DNS, HTTP and HTTPS connections to the outside
(what apt, pip and npm need); nothing outside may open a connection to them.
"""

from __future__ import annotations

import json
from pathlib import Path

from testhosts.settings import Settings
from testhosts.shell import run

TABLE = "cwl_testhosts"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def ruleset(settings: Settings) -> str:
    br, net = settings.bridge, settings.network
    return f"""
table ip {TABLE} {{
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname "{br}" oifname "{br}" accept
    ct state established,related accept
    iifname "{br}" udp dport 53 accept
    iifname "{br}" tcp dport {{ 53, 80, 443 }} accept
    iifname "{br}" drop
    oifname "{br}" drop
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat;
    ip saddr {net} oifname != "{br}" masquerade
  }}
}}
"""


def _saved(settings: Settings) -> Path:
    return settings.state_dir / "network.json"


def up(settings: Settings) -> None:
    br = settings.bridge
    if run(["ip", "link", "show", br], check=False).returncode != 0:
        run(["ip", "link", "add", br, "type", "bridge"])
    run(["ip", "addr", "replace", f"{settings.gateway}/{settings.network.prefixlen}", "dev", br])
    run(["ip", "link", "set", br, "up"])
    run(["nft", "delete", "table", "ip", TABLE], check=False)
    run(["nft", "-f", "-"], input=ruleset(settings))
    saved = _saved(settings)
    if not saved.exists():
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps({"ip_forward": IP_FORWARD.read_text().strip()}))
    IP_FORWARD.write_text("1")


def down(settings: Settings) -> None:
    run(["nft", "delete", "table", "ip", TABLE], check=False)
    run(["ip", "link", "del", settings.bridge], check=False)
    saved = _saved(settings)
    if saved.exists():
        IP_FORWARD.write_text(json.loads(saved.read_text())["ip_forward"])
        saved.unlink()
