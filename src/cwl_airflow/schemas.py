"""cwltool's CWL schemas for a short-lived process (`cwl-airflow run`), from a per-user cache.

cwltool parses its schemas (YAML, with a pure-Python parser) at each start: about 0.5 s of CPU,
half of what the client spends on a run. The daemons pay it once (cwl_airflow.preload); the
client unpickles them instead (0.03 s). The pickle holds the schemas alone, made before any
document is loaded: cwltool's schema loaders also cache the documents they fetch.
"""

from __future__ import annotations

import copyreg
import hashlib
import io
import logging
import os
import pickle
import sys
from importlib import metadata
from pathlib import Path

CWL_VERSIONS = ("v1.0", "v1.1", "v1.2")

log = logging.getLogger(__name__)


def cache_file(cache_home: Path | None = None) -> Path:
    """The pickle of this Python, cwltool and schema-salad (another version makes another)."""
    home = cache_home or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    versions = [sys.version] + [metadata.version(name) for name in ("cwltool", "schema-salad", "ruamel.yaml")]
    key = hashlib.sha256(repr(versions).encode()).hexdigest()[:16]
    return home / "cwl-airflow" / f"cwl-schemas-{key}.pickle"


def _own(path: Path) -> bool:
    """Written by this user alone: a pickle runs code when loaded."""
    status = path.stat()
    return status.st_uid == os.getuid() and not status.st_mode & 0o022


def _pickled(schemas: dict) -> bytes:
    from schema_salad.ref_resolver import NormDict

    def norm_dict(value: NormDict) -> tuple:  # its normalize is set in __init__, before any item
        return NormDict, (value.normalize,), None, None, iter(dict.items(value))

    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = {**copyreg.dispatch_table, NormDict: norm_dict}
    pickler.dump(schemas)
    return buffer.getvalue()


def load() -> None:
    """Fill cwltool's schema cache from the pickle; make the pickle when there is none."""
    from cwltool import process

    if process.SCHEMA_CACHE:  # loaded in this process already
        return
    path = cache_file()
    try:
        if _own(path.parent) and _own(path):
            process.SCHEMA_CACHE.update(pickle.loads(path.read_bytes()))
            return
    except FileNotFoundError:
        pass
    except Exception as err:  # unreadable or from another build: made again below
        log.debug("cwl-airflow: ignoring %s: %s", path, err)
    for version in CWL_VERSIONS:
        process.get_schema(version)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}")
        partial.write_bytes(_pickled(dict(process.SCHEMA_CACHE)))
        partial.chmod(0o600)
        partial.replace(path)
    except OSError as err:  # a read-only home: the next run parses them again
        log.debug("cwl-airflow: cannot write %s: %s", path, err)
