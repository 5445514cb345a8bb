#!/usr/bin/env python3
"""One of the appliance's facts (ansible/group_vars/all/appliance.yml), for Make and shell scripts.

    scripts/fact.py appliance_debian.mirror
"""

from __future__ import annotations

import functools
import json
import sys

from testhosts.facts import FACTS, FACTS_FILE


def fact(name: str) -> object:
    try:
        return functools.reduce(lambda value, key: value[key], name.split("."), FACTS)
    except (KeyError, TypeError):
        sys.exit(f"fact.py: {FACTS_FILE} has no {name}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip())
    value = fact(sys.argv[1])
    print(value if isinstance(value, str | int) else json.dumps(value))
