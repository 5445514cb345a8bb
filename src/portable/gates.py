"""Gates over a built bundle: it runs on the oldest glibc it promises, needs no library from the
host but glibc's, and keeps no trace of the folder it was built in."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# glibc's own libraries: every target has them, at the version the bundle was built against
GLIBC = re.compile(r"^(libc|libm|libdl|libpthread|librt|libutil|libresolv|libanl|ld-linux-x86-64)\.so(\.\d+)*$")
ELF_MAGIC = b"\x7fELF"


@dataclass(frozen=True)
class Elf:
    path: Path
    needed: tuple[str, ...]
    runpath: tuple[str, ...]
    glibc_versions: tuple[tuple[int, ...], ...]


def elf_files(tree: Path) -> Iterator[Path]:
    for path in sorted(tree.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as f:
                if f.read(4) == ELF_MAGIC:
                    yield path


def read_elf(path: Path) -> Elf:
    dump = subprocess.run(["objdump", "-p", str(path)], capture_output=True, text=True, check=True).stdout
    needed = tuple(re.findall(r"^\s+NEEDED\s+(\S+)", dump, re.M))
    runpath = tuple(p for m in re.findall(r"^\s+(?:RUNPATH|RPATH)\s+(\S+)", dump, re.M) for p in m.split(":"))
    versions = tuple(sorted({tuple(map(int, v.split("."))) for v in re.findall(r"\sGLIBC_(\d+(?:\.\d+)+)\b", dump)}))
    return Elf(path, needed, runpath, versions)


def glibc_floor(elves: list[Elf]) -> tuple[tuple[int, ...], Path | None]:
    """The highest GLIBC_x.y symbol version any ELF needs, and which ELF needs it."""
    worst: tuple[tuple[int, ...], Path | None] = ((0,), None)
    for elf in elves:
        if elf.glibc_versions and elf.glibc_versions[-1] > worst[0]:
            worst = (elf.glibc_versions[-1], elf.path)
    return worst


def missing_libraries(elf: Elf, tree: Path) -> list[str]:
    """NEEDED libraries of elf (besides glibc's) that no RUNPATH folder inside the tree holds; a run
    path outside the tree (the build machine's) does not count."""
    folders = [Path(p.replace("${ORIGIN}", "$ORIGIN").replace("$ORIGIN", str(elf.path.parent))).resolve()
               for p in elf.runpath]
    inside = [f for f in folders if f.is_relative_to(tree.resolve())]
    return [name for name in elf.needed
            if not GLIBC.match(name) and not any((folder / name).exists() for folder in inside)]


def unresolved(elves: list[Elf], tree: Path) -> list[str]:
    """What missing_libraries finds for each ELF, one line per library."""
    return [f"{elf.path.relative_to(tree)}: {name} (run path {':'.join(elf.runpath) or 'none'})"
            for elf in elves for name in missing_libraries(elf, tree)]


def files_naming(tree: Path, needle: str) -> list[Path]:
    """Files whose bytes contain needle (e.g. the build's prefix)."""
    found, pattern = [], needle.encode()
    for path in sorted(tree.rglob("*")):
        if path.is_file() and not path.is_symlink() and pattern in path.read_bytes():
            found.append(path)
    return found
