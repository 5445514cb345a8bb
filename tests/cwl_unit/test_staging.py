"""Moving a run's files: reproducible archives, locations pointed at the copies, unsafe archives refused."""

from __future__ import annotations

import io
import tarfile

import pytest

from cwl_airflow import staging


def _tree(tmp_path):
    data = tmp_path / "data"
    (data / "ref" / "sub").mkdir(parents=True)
    (data / "ref" / "genome.fa").write_text(">chr1\nACGT\n")
    (data / "ref" / "genome.fa.fai").write_text("chr1\t4\n")
    (data / "ref" / "sub" / "x.txt").write_text("x")
    (data / "reads.fq").write_text("@r\nACGT\n")
    return data


def test_archive_keeps_the_layout_and_is_the_same_for_the_same_files(tmp_path):
    data = _tree(tmp_path)
    job = {"genome": {"class": "File", "location": (data / "ref/genome.fa").as_uri(),
                      "secondaryFiles": [{"class": "File", "location": (data / "ref/genome.fa.fai").as_uri()}]},
           "reads": {"class": "File", "path": str(data / "reads.fq")},
           "more": {"class": "Directory", "location": (data / "ref/sub").as_uri()},
           "remote": {"class": "File", "location": "https://example.org/x"}, "n": 3}
    paths = staging.local_paths(job)
    first, root = staging.make_archive(paths)
    again, _ = staging.make_archive(reversed(paths))
    assert first == again and root == data
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        assert tar.getnames() == ["reads.fq", "ref/genome.fa", "ref/genome.fa.fai", "ref/sub", "ref/sub/x.txt"]
    folder = staging.receive_archive([first], tmp_path / "uploads", 1 << 20)
    assert staging.receive_archive([first], tmp_path / "uploads", 1 << 20) == folder  # once per content
    moved = staging.relocate(job, root, folder.as_uri())
    assert moved["genome"]["location"] == (folder / "ref/genome.fa").as_uri()
    assert moved["genome"]["secondaryFiles"][0]["location"] == (folder / "ref/genome.fa.fai").as_uri()
    assert moved["reads"] == {"class": "File", "location": (folder / "reads.fq").as_uri()}
    assert moved["remote"]["location"] == "https://example.org/x"
    assert (folder / "ref/sub/x.txt").read_text() == "x"


def _archive(*members: tarfile.TarInfo) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return buffer.getvalue()


@pytest.mark.parametrize("member, reason", [
    (tarfile.TarInfo("../escape"), "unsafe name"),
    (tarfile.TarInfo("/etc/passwd"), "unsafe name"),
    (lambda: (m := tarfile.TarInfo("link"), setattr(m, "type", tarfile.SYMTYPE), setattr(m, "linkname", "/etc"), m)[-1],
     "only files and folders"),
])
def test_unsafe_archives_are_refused_and_leave_nothing(tmp_path, member, reason):
    member = member() if callable(member) else member
    with pytest.raises(staging.ArchiveError, match=reason):
        staging.receive_archive([_archive(member)], tmp_path / "uploads", 1 << 20)
    assert not list((tmp_path / "uploads").iterdir())


def test_size_limits_hold_for_the_archive_and_what_it_unpacks_to(tmp_path):
    big = tarfile.TarInfo("big")
    big.size = 4096
    data = _archive(big)
    with pytest.raises(staging.ArchiveError, match="larger than 20 bytes"):
        staging.receive_archive([data], tmp_path / "uploads", 20)
    with pytest.raises(staging.ArchiveError, match="unpacks to more than 1000 bytes"):
        staging.receive_archive([data], tmp_path / "uploads", 1000)
    with pytest.raises(staging.ArchiveError, match="not a tar.gz"):
        staging.receive_archive([b"plain text"], tmp_path / "uploads", 1000)
    assert not list((tmp_path / "uploads").iterdir())


def test_unpacked_folders_carry_no_setgid_bit_of_the_inputs_folder(tmp_path):
    """The inputs folder is setgid (its files' group is the step user's); a folder copied from
    an input keeps its mode, and the step user may not set that bit: unpacked folders have none."""
    (tmp_path / "src" / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "src" / "sub" / "deeper" / "f.txt").write_text("x")
    archive, _ = staging.make_archive([tmp_path / "src" / "sub"])
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    uploads.chmod(0o2775)
    folder = staging.receive_archive([archive], uploads, 1 << 20)
    modes = {p.relative_to(folder).as_posix(): p.stat().st_mode & 0o7777 for p in [folder, *folder.rglob("*")]}
    assert modes == {".": 0o755, "sub": 0o755, "sub/deeper": 0o755, "sub/deeper/f.txt": 0o644}, modes
