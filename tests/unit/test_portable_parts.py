"""The bundle's shared parts that need no host: relocatable console scripts and the gates."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from portable import entrypoints, gates

SCRIPT = f"#!{sys.executable}\nimport sys\nprint(sys.argv[1:], sys.flags.no_user_site)\n"


def test_scripts_run_through_symlinks_at_paths_with_spaces_after_a_move(tmp_path):
    bin_dir = tmp_path / "a bundle" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python3").symlink_to(sys.executable)
    (bin_dir / "tool").write_text(SCRIPT)
    (bin_dir / "tool").chmod(0o755)
    (bin_dir / "data.txt").write_text("not a script\n")
    assert entrypoints.make_relocatable(bin_dir) == [bin_dir / "tool"]
    assert entrypoints.make_relocatable(bin_dir) == []  # once only
    moved = tmp_path / "moved bundle"
    shutil.move(tmp_path / "a bundle", moved)
    link = tmp_path / "elsewhere" / "tool"
    link.parent.mkdir()
    link.symlink_to(moved / "bin/tool")
    env = {"PATH": "/usr/bin:/bin", "PYTHONHOME": "/nonexistent"}
    for command in (moved / "bin/tool", link):
        out = subprocess.run([command, "an argument", "two"], capture_output=True, text=True, env=env, cwd="/")
        assert out.returncode == 0, out.stderr
        assert out.stdout == "['an argument', 'two'] 1\n"


def test_the_gates_read_real_elf_files(tmp_path):
    python = Path(os.path.realpath(sys.executable))
    elf = gates.read_elf(python)
    assert elf.glibc_versions and elf.glibc_versions[-1] >= (2, 2)
    (tmp_path / "bin").mkdir()
    shutil.copy(python, tmp_path / "bin/python")
    found = [gates.read_elf(p) for p in gates.elf_files(tmp_path)]
    assert [e.path for e in found] == [tmp_path / "bin/python"]
    needed_outside = [n for n in found[0].needed if not gates.GLIBC.match(n)]
    assert len(gates.unresolved(found, tmp_path)) == len(needed_outside) > 0
    (tmp_path / "note").write_text(f"built in {tmp_path}/build\n")
    assert gates.files_naming(tmp_path, f"{tmp_path}/build") == [tmp_path / "note"]


def test_the_archive_keeps_symlinks_and_ships_only_the_bundle(tmp_path):
    from portable import archive

    bundle = tmp_path / "build" / "cwl-airflow"
    (bundle / "python/bin").mkdir(parents=True)
    (bundle / "python/bin/python3.11").write_text("an interpreter\n")
    (bundle / "python/bin/python3").symlink_to("python3.11")
    (bundle / "dist").mkdir()  # what the roles leave beside the bundle
    made = archive.archive(bundle, tmp_path / "out", "cwl-airflow-1.0-linux-x86_64")
    assert [p.name for p in made] == ["cwl-airflow-1.0-linux-x86_64.tar.gz", "cwl-airflow-1.0-linux-x86_64.tar.zst"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [p.name for p in made] + [f"{p.name}.sha256" for p in made])
    for tarball, option in zip(made, ["--gzip", "--zstd"]):
        listing = subprocess.run(["tar", option, "-tvf", tarball], capture_output=True, text=True, check=True).stdout
        assert "cwl-airflow-1.0-linux-x86_64/python/bin/python3 -> python3.11" in listing
        assert "dist" not in listing
        digest, name = Path(f"{tarball}.sha256").read_text().split()
        assert name == tarball.name and digest == hashlib.sha256(tarball.read_bytes()).hexdigest()
