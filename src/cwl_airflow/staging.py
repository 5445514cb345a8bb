"""Moving a run's files between the caller's machine and the appliance.

The caller (`cwl-airflow run`, on any machine that reaches the API) packs the CWL document
into one self-contained YAML document (YAML keeps numbers as written: 0.00001 stays 0.00001)
and sends every local file that the document and the job reference (Files with their
secondary files, Directories with all they hold) as a tar.gz whose paths are relative to the
files' common folder. The appliance unpacks each archive once per content
(`inputs/uploads/<sha256>/`) and the caller points the locations there. Outputs come back the
same way. Archives are made reproducibly (sorted, no owners, no times), so the same files give
the same archive and the same document gives the same DAG.

schema-salad (cwltool's) is imported where it is used: the client module imports this one,
and its commands other than `run` need neither.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

CHUNK = 1 << 20


def files_in(value: Any) -> Iterator[dict[str, Any]]:
    """Every File and Directory object in a CWL value (secondary files and listings included)."""
    if isinstance(value, dict):
        if value.get("class") in ("File", "Directory"):
            yield value
        for item in value.values():
            yield from files_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from files_in(item)


def file_under(location: str, folders: Iterable[Path]) -> bool:
    """Whether a file:// location, links followed, lies in one of these folders."""
    from schema_salad.ref_resolver import uri_file_path

    if not location.startswith("file://"):
        return False
    path = Path(uri_file_path(location)).resolve()
    return any(path.is_relative_to(folder.resolve()) for folder in folders)


class ArchiveError(ValueError):
    """An archive that is not one the appliance takes (the reason says why)."""


class ArchiveTooLarge(ArchiveError):
    """An archive above the size limit."""


# -- the caller's side ---------------------------------------------------------------------------

def local_paths(value: Any) -> list[Path]:
    """The local files and folders that the File and Directory objects of a value name."""
    from schema_salad.ref_resolver import uri_file_path

    found = []
    for item in files_in(value):
        ref = item.get("location") or item.get("path") or ""
        if ref.startswith("file://"):
            found.append(Path(uri_file_path(ref)))
        elif ref and ":" not in ref.split("/", 1)[0]:
            found.append(Path(ref).resolve())
    return found


def make_archive(paths: Iterable[Path]) -> tuple[bytes, Path]:
    """A reproducible tar.gz of these files and folders, and the folder its names start from."""
    paths = sorted({p.resolve() for p in paths if p.exists()})
    if not paths:
        return b"", Path("/")
    root = Path(os.path.commonpath([p.parent for p in paths]))
    members: dict[str, Path] = {}
    for path in paths:
        for item in [path, *sorted(path.rglob("*"))] if path.is_dir() else [path]:
            members[str(item.relative_to(root))] = item
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=6) as compressed, \
            tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(members):
            source = members[name]
            info = tarfile.TarInfo(name)
            info.mode = 0o755 if source.is_dir() or os.access(source, os.X_OK) else 0o644
            if source.is_dir():
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = source.stat().st_size
                with source.open("rb") as handle:
                    tar.addfile(info, handle)
    return buffer.getvalue(), root


def relocate(value: Any, old_root: Path | str, new_root: str) -> Any:
    """Point every File and Directory under old_root (a path or file:// URI) at new_root (a URI)."""
    for item in files_in(value):
        ref = item.get("location") or item.get("path") or ""
        moved = relocate_uri(ref, old_root, new_root)
        if moved != ref:
            item["location"] = moved
            item.pop("path", None)
    return value


def relocate_uri(ref: str, old_root: Path | str, new_root: str) -> str:
    """A path or file:// URI under old_root as the same place under new_root (a URI); others as they are."""
    from schema_salad.ref_resolver import file_uri

    old = str(old_root) if str(old_root).startswith("file://") else file_uri(str(old_root))
    old, new = old.rstrip("/") + "/", new_root.rstrip("/") + "/"
    if ref and not ref.startswith("file://") and ":" not in ref.split("/", 1)[0]:
        ref = file_uri(str(Path(ref).resolve()))
    return new + ref[len(old):] if ref.startswith(old) else ref


# -- the appliance's side ------------------------------------------------------------------------

def receive_archive(stream: Iterable[bytes], uploads: Path, max_bytes: int) -> Path:
    """Unpack an uploaded tar.gz into uploads/<sha256>/ (once per content); the folder.

    Only regular files and folders with relative names are taken; the archive and what it
    unpacks to are limited to max_bytes each."""
    uploads.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=uploads, prefix=".upload-") as spool:
        digest, size = hashlib.sha256(), 0
        for chunk in stream:
            size += len(chunk)
            if size > max_bytes:
                raise ArchiveTooLarge(f"the archive is larger than {max_bytes} bytes")
            digest.update(chunk)
            spool.write(chunk)
        spool.flush()
        folder = uploads / digest.hexdigest()
        if folder.is_dir():
            return folder
        staged = Path(tempfile.mkdtemp(dir=uploads, prefix=".unpack-"))
        try:
            spool.seek(0)
            _unpack(spool, staged, max_bytes)
            staged.chmod(0o755)
            try:
                staged.rename(folder)
            except OSError:  # unpacked meanwhile by a concurrent upload of the same archive
                if not folder.is_dir():
                    raise
        finally:
            shutil.rmtree(staged, ignore_errors=True)
    return folder


def _unpack(archive: IO[bytes], into: Path, max_bytes: int) -> None:
    total = 0
    try:
        with tarfile.open(fileobj=archive, mode="r:gz") as tar:
            for member in tar:
                parts = Path(member.name).parts
                if member.name.startswith("/") or ".." in parts or not parts:
                    raise ArchiveError(f"unsafe name in the archive: {member.name!r}")
                if not (member.isfile() or member.isdir()):
                    raise ArchiveError(f"only files and folders are taken, not {member.name!r}")
                total += member.size
                if total > max_bytes:
                    raise ArchiveError(f"the archive unpacks to more than {max_bytes} bytes")
                target = into.joinpath(*parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as source, target.open("wb") as dest:
                    shutil.copyfileobj(source, dest, CHUNK)
                target.chmod(0o755 if member.mode & 0o111 else 0o644)
        # plain modes for folders too: the inputs folder is setgid (its group is the step user's),
        # and a tool that copies an input folder copies its mode, which the step user may not set
        for folder in [into, *into.rglob("*")]:
            if folder.is_dir():
                folder.chmod(0o755)
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as err:
        raise ArchiveError(f"not a tar.gz archive: {err}") from None


def folder_archive(folder: Path, exclude: Iterable[str] = ()) -> bytes:
    """A tar.gz of what a folder holds (names relative to it), for sending outputs back."""
    skip = set(exclude)
    return make_archive([p for p in folder.iterdir() if p.name not in skip])[0] if folder.is_dir() else b""


def unpack_into(data: bytes, folder: Path) -> None:
    """The caller's side of folder_archive."""
    folder.mkdir(parents=True, exist_ok=True)
    if data:
        _unpack(io.BytesIO(data), folder, max_bytes=1 << 62)
