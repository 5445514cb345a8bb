"""python -m testhosts: boot, list, enter and remove test hosts."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from testhosts.facts import API_PORT, PUBLISHED_PORTS
from testhosts.playbook import run_playbook
from testhosts.settings import Settings
from testhosts.testbed import Testbed


def print_access(testbed: Testbed, names: list[str]) -> None:
    credentials = testbed.dir / "credentials"
    ssh = f"ssh -F {testbed.ssh_config}"
    print(f"\ninventory:   {testbed.inventory}")
    print(f"credentials: {credentials}  (generated secrets, 0600)")
    for name in names:
        print(f"ssh:         {ssh} {name}")
    admin = credentials / "airflow-admin.password"
    if admin.exists():  # the play installed Airflow (on the first host)
        print(f"\nAirflow UI and REST API, Flower and RabbitMQ's management listen on the host's loopback;"
              f"\nforward them, then open http://127.0.0.1:{API_PORT} "
              f"(user admin, password {admin.read_text().strip()}):"
              f"\n  {ssh} -N {' '.join(f'-L {p}:127.0.0.1:{p}' for p in PUBLISHED_PORTS.values())} {names[0]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testhosts", description=__doc__)
    parser.add_argument("-t", "--testbed", default="dev", help="testbed name (default: dev)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="boot hosts and wait until they accept ssh")
    up.add_argument("names", nargs="+")
    up.add_argument("-g", "--group", default="appliance", help="Ansible group of the hosts")
    up.add_argument("-p", "--play", type=Path, help="then apply this playbook to them")
    down = sub.add_parser("down", help="remove the testbed's hosts (and the network when none is left)")
    down.add_argument("--all", action="store_true", help="every testbed")
    sub.add_parser("list", help="hosts of every testbed")
    ssh = sub.add_parser("ssh", help="ssh into a host")
    ssh.add_argument("name")
    ssh.add_argument("cmd", nargs=argparse.REMAINDER)
    ex = sub.add_parser("exec", help="run a command in a host through nsenter (no ssh)")
    ex.add_argument("name")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[testhosts] %(message)s")

    settings = Settings.from_env()
    testbed = Testbed(args.testbed, settings)
    if args.command == "up":
        testbed.up(args.names, groups={args.group: args.names})
        if args.play:
            result = run_playbook(testbed.inventory, args.play, echo=True)
            if result.returncode:
                return result.returncode
        print_access(testbed, args.names)
    elif args.command == "down":
        for tb in Testbed.all(settings) if args.all else [testbed]:
            tb.down()
    elif args.command == "list":
        for tb in Testbed.all(settings):
            for h in tb.hosts():
                state = "running" if h.nspawn_pid() else "stopped"
                print(f"{tb.name}\t{h.name}\t{h.ip}\t{state}")
    elif args.command == "ssh":
        os.execvp("ssh", ["ssh", "-F", str(testbed.ssh_config), args.name, *args.cmd])
    elif args.command == "exec":
        proc = testbed.host(args.name).exec(*(args.cmd or ["bash"]), check=False)
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        return proc.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
