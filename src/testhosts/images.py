"""A small Docker image for tests, made without a registry or a Docker engine.

Busybox (from Debian's busybox-static package) in one layer, written in the archive format
that `docker load` reads. Deterministic: the same package gives the same image ID.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from pathlib import Path

from testhosts.settings import Settings
from testhosts.shell import CommandError, run

BUSYBOX_TAG = "appliance-test/busybox:latest"


def busybox_archive(settings: Settings, tag: str = BUSYBOX_TAG) -> Path:
    """Return a `docker load` archive of a busybox image tagged ``tag`` (built once, cached)."""
    out = settings.cache_dir / "images" / f"{tag.replace('/', '_').replace(':', '_')}.tar"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        layer = _layer(_busybox_binary(Path(tmp)))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    write_archive(tmp_out, layer, tag, cmd=["sh"])
    tmp_out.rename(out)
    return out


def _busybox_binary(tmp: Path) -> Path:
    try:
        run(["apt-get", "download", "busybox-static"], cwd=tmp)
    except CommandError:  # no package lists yet on this machine
        run(["apt-get", "update", "-qq"])
        run(["apt-get", "download", "busybox-static"], cwd=tmp)
    deb = next(tmp.glob("busybox-static_*.deb"))
    run(["dpkg-deb", "-x", deb, tmp / "x"])
    return tmp / "x/bin/busybox"


def _layer(binary: Path) -> bytes:
    busybox = binary.read_bytes()
    # a static binary: runs on the build machine; it lists itself among its applets
    applets = sorted(set(run([binary, "--list"]).stdout.split()) - {"busybox"})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, mode in (("bin", 0o755), ("tmp", 0o1777), ("etc", 0o755)):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        info = tarfile.TarInfo("bin/busybox")
        info.mode, info.size = 0o755, len(busybox)
        tar.addfile(info, io.BytesIO(busybox))
        for applet in applets:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
        info = tarfile.TarInfo("etc/passwd")
        info.mode, info.size = 0o644, len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
    return buf.getvalue()


def write_archive(path: Path, layer: bytes, tag: str, cmd: list[str]) -> str:
    """Write a one-layer image as a `docker load` archive; return the image ID."""
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": cmd},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "testhosts.images"}],
    }, sort_keys=True).encode()
    image_id = hashlib.sha256(config).hexdigest()
    layer_dir = diff_id.removeprefix("sha256:")
    manifest = json.dumps([{"Config": f"{image_id}.json", "RepoTags": [tag],
                            "Layers": [f"{layer_dir}/layer.tar"]}]).encode()
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in ((f"{image_id}.json", config), (f"{layer_dir}/layer.tar", layer),
                           ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.mode, info.size = 0o644, len(data)
            tar.addfile(info, io.BytesIO(data))
    return image_id
