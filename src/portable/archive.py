"""Make the portable tarball of a built bundle: relocatable entry points, byte code that names no
build path, the gates, a tar.gz that a minimal Debian 11 can unpack and a smaller tar.zst, each
with its .sha256.

    python3 -m portable.archive BUNDLE OUT_DIR --name cwl-airflow-VERSION-linux-x86_64

BUNDLE holds python/ (CPython with Airflow, cwl-airflow and cwltool installed) and node/, as
ansible/portable.yml leaves it; only those and bin/ go into the archive.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from portable import entrypoints, gates

GLIBC_FLOOR = (2, 31)  # Debian 11, Ubuntu 20.04
SHIPPED = ("bin", "python", "node")
# the commands users run, each from the bundle's bin/ with the bundle's Python and Node first on PATH
COMMANDS = ("cwl-airflow", "airflow", "cwltool")
LAUNCHER = """#!/bin/sh
# {name} of the portable cwl-airflow bundle: the bundle's Python and Node.js first on PATH; the
# platform's home in $CWL_AIRFLOW_HOME (default ~/.local/share/cwl-airflow), Airflow's in its airflow/
bundle=$(dirname -- "$(dirname -- "$(readlink -f -- "$0")")")
: "${{CWL_AIRFLOW_HOME:=${{XDG_DATA_HOME:-$HOME/.local/share}}/cwl-airflow}}"
: "${{AIRFLOW_HOME:=$CWL_AIRFLOW_HOME/airflow}}"
: "${{CWL_AIRFLOW_LAUNCHER:=$bundle/bin/cwl-airflow}}"  # what a user unit runs (the AppImage sets itself)
export CWL_AIRFLOW_HOME AIRFLOW_HOME CWL_AIRFLOW_LAUNCHER
PATH="$bundle/python/bin:$bundle/node/bin:$PATH" PYTHONNOUSERSITE=1 exec "$bundle/python/bin/{name}" "$@"
"""


class GateFailed(RuntimeError):
    pass


def prepare(bundle: Path) -> None:
    """Entry points and byte code of the bundle, in place."""
    python_bin = bundle / "python/bin"
    entrypoints.make_relocatable(python_bin)
    (bundle / "bin").mkdir(exist_ok=True)
    for name in COMMANDS:
        if not (python_bin / name).exists():
            raise GateFailed(f"{python_bin / name} is missing: the bundle has no {name}")
        launcher = bundle / "bin" / name
        launcher.write_text(LAUNCHER.format(name=name))
        launcher.chmod(0o755)
    # smaller, same behaviour: no symbol tables in shared objects, no packages' own test suites
    shared = [str(p) for p in bundle.glob("python/lib/python3*/site-packages/**/*.so*") if p.is_file()]
    if shared:
        subprocess.run(["strip", "--strip-unneeded", *shared], check=True)
    for tests in list(bundle.glob("python/lib/python3*/site-packages/**/tests")):
        if tests.is_dir() and (tests / "__init__.py").exists():
            shutil.rmtree(tests)
    # pip's record of where a package came from names the build's files
    for record in bundle.glob("python/lib/python3*/site-packages/*.dist-info/direct_url.json"):
        record.unlink()
    # pip itself (14 MB): the bundle runs nothing that installs; `python3 -m ensurepip` brings it
    # back from CPython's own wheel for whoever adds packages
    for pip in [*bundle.glob("python/lib/python3*/site-packages/pip"),
                *bundle.glob("python/lib/python3*/site-packages/pip-*.dist-info")]:
        shutil.rmtree(pip)
    for script in bundle.glob("python/bin/pip*"):
        script.unlink()
    for cache in list(bundle.rglob("__pycache__")):
        shutil.rmtree(cache)
    bundle_libraries(bundle)
    # compiled once, with source names relative to the bundle (it can be anywhere); forced, as
    # this process itself imports modules (run it with -B, so that it writes no byte code)
    for lib in bundle.glob("python/lib/python3*"):
        if not compileall.compile_dir(lib, quiet=1, stripdir=str(bundle), force=True, workers=os.cpu_count() or 1):
            raise GateFailed(f"byte-compiling {lib} failed")


def system_libraries() -> dict[str, Path]:
    """The build host's shared libraries by name (ldconfig's cache), x86-64 only."""
    listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    found: dict[str, Path] = {}
    for line in listing.splitlines()[1:]:
        name, _, rest = line.strip().partition(" (")
        if "x86-64" in rest and " => " in rest:
            found.setdefault(name, Path(rest.rpartition(" => ")[2]))
    return found


def bundle_libraries(bundle: Path) -> None:
    """Libraries that ELF files of the bundle need from the build host besides glibc's (wheels and
    Node.js need libstdc++ and libgcc_s, as the manylinux policy lets them): copied into
    python/lib, and each such ELF given a run path to it."""
    lib = bundle / "python/lib"
    system = system_libraries()
    pending = [gates.read_elf(p) for p in gates.elf_files(bundle)]
    while pending:
        elf = pending.pop()
        missing = gates.missing_libraries(elf, bundle)
        if not missing:
            continue
        for name in missing:
            if not (lib / name).exists():
                if name not in system:
                    raise GateFailed(f"{elf.path.relative_to(bundle)} needs {name}, which the build host has not")
                shutil.copy(system[name], lib / name)
                (lib / name).chmod(0o755)
                subprocess.run(["patchelf", "--set-rpath", "$ORIGIN", str(lib / name)], check=True)
                pending.append(gates.read_elf(lib / name))
        to_lib = "$ORIGIN/" + os.path.relpath(lib, elf.path.parent)
        runpath = ":".join([*elf.runpath, to_lib])
        subprocess.run(["patchelf", "--set-rpath", runpath, str(elf.path)], check=True)


def check(bundle: Path, build_root: str) -> list[str]:
    """What the gates find wrong with the bundle (nothing: it may ship)."""
    problems = []
    elves = [gates.read_elf(p) for p in gates.elf_files(bundle)]
    floor, which = gates.glibc_floor(elves)
    if floor > GLIBC_FLOOR:
        problems.append(f"{which} needs GLIBC_{'.'.join(map(str, floor))}; the floor is "
                        f"{'.'.join(map(str, GLIBC_FLOOR))}")
    problems += [f"not in the bundle: {m}" for m in gates.unresolved(elves, bundle)]
    problems += [f"names the build folder {build_root}: {p.relative_to(bundle)}"
                 for p in gates.files_naming(bundle, build_root)]
    return problems


# what users download: gzip, which every minimal system unpacks; zstd, a third smaller
COMPRESSORS = {"gz": ["gzip", "-9", "-n"], "zst": ["zstd", "-19", "-T0", "-q"]}


def archive(bundle: Path, out_dir: Path, name: str, formats: tuple[str, ...] = ("gz", "zst")) -> list[Path]:
    """bundle's shipped folders as out_dir/name.tar.<format> each, under a top folder `name`,
    each with its .sha256."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tar = out_dir / f"{name}.tar"
    members = [p for p in SHIPPED if (bundle / p).exists()]
    subprocess.run(["tar", "--create", "--file", tar, "--sort=name", "--owner=0", "--group=0", "--numeric-owner",
                    f"--transform=s,^,{name}/,S", "-C", bundle, *members], check=True)
    archives = []
    for fmt in formats:
        archive = out_dir / f"{tar.name}.{fmt}"
        with open(tar, "rb") as source, open(f"{archive}.tmp", "wb") as out:
            subprocess.run(COMPRESSORS[fmt], stdin=source, stdout=out, check=True)
        os.replace(f"{archive}.tmp", archive)
        with open(archive, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        Path(f"{archive}.sha256").write_text(f"{digest}  {archive.name}\n")
        archives.append(archive)
    tar.unlink()
    return archives


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--name", required=True, help="the archive's and its top folder's name")
    parser.add_argument("--build-root", help="the folder the bundle was built in (default: its parent)")
    args = parser.parse_args(argv)
    bundle = args.bundle.resolve()
    build_root = args.build_root or str(bundle.parent)
    prepare(bundle)
    problems = check(bundle, build_root)
    if problems:
        print("portable: the bundle fails its gates:", *problems, sep="\n  ", file=sys.stderr)
        return 1
    for made in archive(bundle, args.out_dir, args.name):
        print(f"portable: {made} ({made.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
