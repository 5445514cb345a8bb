"""The portable tarball (make portable), on test hosts of Debian 11, 12 and 13 with no python3:
a normal user unpacks it with the tools of a minimal Debian at a path with a space, and its
commands work from there, through a symlink and after the tree is moved.

`cwl-airflow up` (the platform in the foreground) is not built yet; until then these tests run
the bundle's cwltool, with its Node.js, on a workflow with JavaScript, scatter and a subworkflow."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testhosts import one_host

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "build/portable"
NAME = f"cwl-airflow-{(REPO / 'packer/VERSION').read_text().strip()}-linux-x86_64"
WORKFLOW = REPO / "tests/cwl/features.cwl"
EXPECTED = {"echoed": ["a!", "b!"], "shouted": "A!", "joined": "a! b!"}


@pytest.fixture(scope="module")
def tarball() -> Path:
    """Built now by make portable's script (Packer on a Debian 11 build host), as users get it."""
    for old in OUTPUT.glob(f"{NAME}.tar.gz*"):
        old.unlink()
    subprocess.run([sys.executable, REPO / "scripts/portable.py", "--output-dir", OUTPUT], check=True,
                   env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    return OUTPUT / f"{NAME}.tar.gz"


def test_each_archive_comes_with_its_checksum_and_both_hold_the_same_tree(tarball):
    listings = []
    for archive, option in ((tarball, "--gzip"), (OUTPUT / f"{NAME}.tar.zst", "--zstd")):
        digest, name = Path(f"{archive}.sha256").read_text().split()
        assert name == archive.name
        assert digest == hashlib.sha256(archive.read_bytes()).hexdigest()
        listings.append(subprocess.run(["tar", option, "-tvf", archive], capture_output=True, text=True,
                                       check=True).stdout)
    assert listings[0] == listings[1]
    assert f"{NAME}/bin/cwl-airflow" in listings[0]
    assert (OUTPUT / f"{NAME}.tar.zst").stat().st_size < 0.8 * tarball.stat().st_size


@pytest.mark.parametrize("suite", ["bullseye", "bookworm", "trixie"])
def test_a_user_unpacks_and_runs_it_on(suite, settings, tarball):
    with one_host(f"portable-{suite}", settings, suite) as host:
        host.exec("sh", "-c", "apt-get -qq -y purge python3 'python3*-minimal' >/dev/null 2>&1; "
                              "! command -v python3")
        host.exec("useradd", "--create-home", "someone")
        for path in (tarball, WORKFLOW):
            (host.root / "var/tmp" / path.name).write_bytes(path.read_bytes())  # /tmp is a tmpfs
        (host.root / "var/tmp/job.json").write_text(json.dumps({"words": ["a", "b"], "shout": True}))

        def as_user(script: str) -> str:
            out = host.exec("runuser", "-u", "someone", "--", "env", "-i", "HOME=/home/someone",
                            "PATH=/usr/bin:/bin", "sh", "-c", script, check=False)
            assert out.returncode == 0, f"{suite}: {script}\n{out.stdout}\n{out.stderr}"
            return out.stdout

        as_user(f'mkdir "$HOME/my tools" && tar -xzf /var/tmp/{tarball.name} -C "$HOME/my tools" && '
                f'mkdir "$HOME/bin" && ln -s "$HOME/my tools/{NAME}/bin/cwltool" "$HOME/bin/cwltool"')
        runs = {
            "in place": f'"$HOME/my tools/{NAME}/bin/cwltool"',
            "through a symlink, from another folder": 'cd / && "$HOME/bin/cwltool"',
            "after a move": f'mv "$HOME/my tools" "$HOME/moved tools" && "$HOME/moved tools/{NAME}/bin/cwltool"',
        }
        for how, cwltool in runs.items():
            out = as_user(f'{cwltool} --quiet --outdir "$HOME/out" /var/tmp/{WORKFLOW.name} /var/tmp/job.json')
            assert json.loads(out) == EXPECTED, how
        assert "cwl-airflow" in as_user(f'"$HOME/moved tools/{NAME}/bin/cwl-airflow" --help')
        assert as_user(f'"$HOME/moved tools/{NAME}/bin/airflow" version').strip().startswith("3.")
