#!/usr/bin/env python3
"""The AppImage runtime (appimage/runtime.c): built once per set of inputs, then taken from the cache.

    scripts/appimage-runtime.py

Built by appimage/build-runtime.sh in a Debian 12 root (testhosts.buildroot; Debian 12 has the
static libraries); the hash of the source, the script and the root names the file in the cache
(TESTHOSTS_CACHE). Prints the runtime's path.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from testhosts import buildroot
from testhosts.settings import Settings

REPO = Path(__file__).resolve().parents[1]
VERSION = (REPO / "packer/VERSION").read_text().strip()
RECIPE = buildroot.Build("appimage-runtime", "bookworm", REPO / "appimage/build-runtime.sh",
                         (REPO / "appimage/runtime.c",), (("RUNTIME_VERSION", VERSION),))


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    settings = Settings.from_env()
    out = settings.cache_dir / f"appimage-runtime-{VERSION}-{RECIPE.cache_key(settings)}"
    if not out.exists():
        RECIPE.run(settings, None, "runtime", out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
