"""Celery queues chosen by a step's ResourceRequirement.

queues.yaml maps queue names to what one task of that queue may use, e.g.

    default: {cpus: 1, ram: 2048}
    big: {cpus: 8, ram: 32768}

A step goes to the smallest queue (fewest cpus, then least ram, in MiB like CWL's ramMin)
that satisfies its coresMin and ramMin; a step without a static ResourceRequirement goes to
the default queue. The workers of each host consume the queues their host can serve.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import yaml


class Queue(NamedTuple):
    name: str
    cpus: float
    ram: float


class QueueError(ValueError):
    pass


def load(path: Path) -> list[Queue]:
    """The queues of a queues.yaml, smallest first; none when the file does not exist."""
    if not path.exists():
        return []
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise QueueError(f"{path}: expected a mapping of queue names to {{cpus, ram}}")
    queues = []
    for name, size in data.items():
        try:
            queues.append(Queue(str(name), float(size["cpus"]), float(size["ram"])))
        except (TypeError, KeyError, ValueError):
            raise QueueError(f"{path}: queue {name!r} needs numbers cpus and ram, got {size!r}") from None
    return sorted(queues, key=lambda q: (q.cpus, q.ram, q.name))


def choose(queues: list[Queue], cores: float | None, ram: float | None, default: str) -> str:
    """The smallest queue with at least `cores` and `ram`; `default` when nothing is required."""
    if cores is None and ram is None:
        return default
    for queue in queues:
        if (cores is None or queue.cpus >= cores) and (ram is None or queue.ram >= ram):
            return queue.name
    if not queues:
        return default
    raise QueueError(f"no queue has {cores or 0:g} cpus and {ram or 0:g} MiB of RAM (queues: "
                     + ", ".join(f"{q.name} {q.cpus:g}/{q.ram:g}" for q in queues) + ")")
