"""The portable bundle's CPython (scripts/portable-python.py): built in Debian 11, it passes the
bundle's gates, and runs as a normal user from a folder with a space in its name, through a
symlink and after the folder is moved, on test hosts of Debian 11, 12 and 13."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from artifact_tests import suites
from portable import entrypoints, gates
from portable.archive import GLIBC_FLOOR
from testhosts import one_host

REPO = Path(__file__).resolve().parents[1]
BUILDER = REPO / "scripts/portable-python.py"
# what Airflow, cwltool and pip need of the standard library, with the OpenSSL the build brought
PROBE = ("import ssl, sqlite3, ctypes, lzma, bz2, zlib, uuid, hashlib, json, venv, decimal, sys; "
         "ctypes.CDLL(None); hashlib.sha3_256(); sqlite3.connect(':memory:').execute('select 1'); "
         "print(ssl.OPENSSL_VERSION, sys.prefix, sep='|')")


def builder(*args: str) -> str:
    """What scripts/portable-python.py prints last: the archive's path."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, BUILDER, *args], check=True, stdout=subprocess.PIPE, text=True,
                          env=env).stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def archive() -> Path:
    """The archive, from the cache or built now (minutes)."""
    return Path(builder())


@pytest.fixture(scope="module")
def unpacked(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("portable") / "my python"
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="tar")
    return tree


@pytest.fixture(scope="module")
def elves(unpacked: Path) -> list[gates.Elf]:
    return [gates.read_elf(p) for p in gates.elf_files(unpacked)]


def test_it_needs_glibc_2_31_at_most(elves):
    floor, which = gates.glibc_floor(elves)
    assert floor <= GLIBC_FLOOR, f"{which} needs GLIBC_{'.'.join(map(str, floor))}"
    assert floor >= (2, 2), "no glibc symbol versions found: the gate read nothing"


def test_every_library_but_glibcs_is_inside(elves, unpacked):
    assert len(elves) > 20  # the interpreter, lib-dynload's modules, the copied libraries
    assert gates.unresolved(elves, unpacked) == []


def test_no_file_names_the_build_folder(unpacked):
    from importlib import util

    spec = util.spec_from_file_location("builder", BUILDER)
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert entrypoints.make_relocatable(unpacked / "bin") == []  # pip's scripts are already
    assert gates.files_naming(unpacked, module.BUILD_FOLDER) == []


@pytest.mark.parametrize("suite", suites("bullseye"))
def test_it_runs_on(suite, settings, archive):
    with one_host(f"python-{suite}", settings, suite) as host:
        (host.root / "var/tmp/python.tar.gz").write_bytes(archive.read_bytes())  # /tmp is a tmpfs
        host.exec("useradd", "--create-home", "someone")
        as_user = ["runuser", "-u", "someone", "--", "env", "-i", "HOME=/home/someone", "PATH=/usr/bin:/bin"]
        host.exec(*as_user, "sh", "-c", 'mkdir -p "$HOME/my tools/python" && '
                  'tar -xzf /var/tmp/python.tar.gz -C "$HOME/my tools/python" && '
                  'ln -s "$HOME/my tools/python/bin/python3" "$HOME/py"')
        runs = {
            "in place": '"$HOME/my tools/python/bin/python3"',
            "through a symlink": '"$HOME/py"',
            "moved": 'mv "$HOME/my tools" "$HOME/moved tools" && "$HOME/moved tools/python/bin/python3"',
        }
        for how, command in runs.items():
            out = host.exec(*as_user, "sh", "-c", f'{command} -I -c "{PROBE}"', check=False)
            assert out.returncode == 0, f"{suite}, {how}: {out.stderr}"
            openssl, prefix = out.stdout.strip().split("|")
            assert openssl.startswith("OpenSSL 3."), out.stdout
            assert prefix == f"/home/someone/{'moved' if how == 'moved' else 'my'} tools/python", f"{how}: {prefix}"
