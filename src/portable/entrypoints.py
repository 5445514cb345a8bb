"""Console scripts that work from any folder, through symlinks, at a path with spaces and after
the tree is moved: pip writes the interpreter's absolute path into each script's shebang; these
get a /bin/sh line instead that finds python3 beside the script's real location."""

from __future__ import annotations

import re
import sys
from pathlib import Path

# For sh: run python3 from the folder of the script's real path (symlinks resolved), with no
# user site-packages and no PYTHONHOME of the caller's. For Python: a string, then the script.
SHEBANG = b"""#!/bin/sh
'''exec' env -u PYTHONHOME "$(dirname -- "$(readlink -f -- "$0")")/python3" -s "$0" "$@"
' '''
"""
PYTHON_SHEBANG = re.compile(rb"^#![^\n]*python[0-9.]*[^\n]*\n")


def make_relocatable(bin_dir: Path) -> list[Path]:
    """Rewrite the shebang of every Python script in bin_dir; the scripts rewritten."""
    rewritten = []
    for script in sorted(bin_dir.iterdir()):
        if script.is_symlink() or not script.is_file():
            continue
        content = script.read_bytes()
        if content.startswith(SHEBANG) or not PYTHON_SHEBANG.match(content):
            continue
        script.write_bytes(SHEBANG + PYTHON_SHEBANG.sub(b"", content, count=1))
        rewritten.append(script)
    return rewritten


if __name__ == "__main__":  # run as a file where the project is not installed: the CPython build
    for path in make_relocatable(Path(sys.argv[1])):
        print(f"relocatable: {path}")
