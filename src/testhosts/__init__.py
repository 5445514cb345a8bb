"""Disposable Debian test hosts with systemd as PID 1, booted with systemd-nspawn.

A *testbed* is a named group of hosts on one private bridge, reachable over ssh and
described by an Ansible inventory and an ssh config. Used by the pytest fixtures in
``tests/`` and by ``make host``; ``python -m testhosts --help`` is the command line.
"""

from testhosts.settings import Settings
from testhosts.testbed import Testbed, one_host

__all__ = ["Settings", "Testbed", "one_host"]
