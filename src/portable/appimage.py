"""Make the AppImage of a prepared bundle (after portable.archive): an AppDir around the same
tree, a zstd squashfs of it behind the project's runtime (appimage/runtime.c), update
information in the runtime's .upd_info section, the payload's length and CRC-32 in .payload_crc
(checked by the runtime at each start), and a .sha256.

    python3 -m portable.appimage BUNDLE OUT_DIR --name cwl-airflow-VERSION-x86_64 --runtime RUNTIME \\
        --version VERSION --update-url URL

The AppDir: AppRun (the bundle's cwl-airflow; `up` when no command is given), one .desktop,
the icon as SVG and 256x256 PNG (usr/share/icons/hicolor, .DirIcon), AppStream metainfo, and the
bundle itself as usr/ (its bin/, python/, node/: hard links, no copy).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

from portable.archive import SHIPPED

APP_ID = "org.commonwl.cwl_airflow"
SUMMARY = "Run CWL workflows on Apache Airflow"
APPRUN = """#!/bin/sh
# AppRun of the cwl-airflow AppImage: the bundle's cwl-airflow, `up` when no command is given. It
# is the image's foreground process: `up` stays the parent of every daemon while the image runs.
here=$(dirname -- "$(readlink -f -- "$0")")
CWL_AIRFLOW_LAUNCHER=${APPIMAGE:-$here/AppRun}  # what a user unit runs: the AppImage itself
export CWL_AIRFLOW_LAUNCHER
[ $# -gt 0 ] || set -- up
exec "$here/usr/bin/cwl-airflow" "$@"
"""
DESKTOP = """[Desktop Entry]
Type=Application
Name=cwl-airflow
GenericName=Workflow platform
Comment={summary}
Exec=cwl-airflow
Icon=cwl-airflow
Terminal=true
Categories=Science;Development;
Keywords=CWL;workflow;Airflow;bioinformatics;
X-AppImage-Version={version}
"""
METAINFO = """<?xml version="1.0" encoding="UTF-8"?>
<component type="console-application">
  <id>{app_id}</id>
  <name>cwl-airflow</name>
  <summary>{summary}</summary>
  <metadata_license>CC0-1.0</metadata_license>
  <project_license>Apache-2.0</project_license>
  <developer id="org.commonwl">
    <name>The cwl-airflow developers</name>
  </developer>
  <description>
    <p>The whole CWL platform for one user: Apache Airflow with its UI and API, and the CWL API
    that turns each Common Workflow Language workflow into an Airflow DAG, one task per step,
    run by cwltool. Start it with no arguments; run a workflow with
    "cwl-airflow run workflow.cwl job.json".</p>
  </description>
  <launchable type="desktop-id">cwl-airflow.desktop</launchable>
  <url type="homepage">{homepage}</url>
  <provides>
    <binary>cwl-airflow</binary>
  </provides>
  <categories>
    <category>Science</category>
    <category>Development</category>
  </categories>
  <content_rating type="oars-1.1"/>
  <releases>
    <release version="{version}" date="{date}"/>
  </releases>
</component>
"""
# The icon: a workflow of three steps (circles) joined by edges, on a rounded square. One
# geometry, written as SVG and drawn into the PNG (no image library in the bundle's build).
SIZE = 256
BACKGROUND = (0x1f, 0x5f, 0x9f)
FOREGROUND = (0xff, 0xff, 0xff)
STEPS = ((64, 72, 26), (192, 72, 26), (128, 188, 26))  # x, y, radius
EDGES = (((64, 72), (192, 72)), ((64, 72), (128, 188)), ((192, 72), (128, 188)))
EDGE_WIDTH = 12
CORNER = 40


def icon_svg() -> str:
    color = "#%02x%02x%02x"
    shapes = [f'<rect width="{SIZE}" height="{SIZE}" rx="{CORNER}" fill="{color % BACKGROUND}"/>']
    shapes += [f'<line x1="{a[0]}" y1="{a[1]}" x2="{b[0]}" y2="{b[1]}" stroke="{color % FOREGROUND}" '
               f'stroke-width="{EDGE_WIDTH}"/>' for a, b in EDGES]
    shapes += [f'<circle cx="{x}" cy="{y}" r="{r}" fill="{color % FOREGROUND}"/>' for x, y, r in STEPS]
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{SIZE}" height="{SIZE}" '
            f'viewBox="0 0 {SIZE} {SIZE}">\n  ' + "\n  ".join(shapes) + "\n</svg>\n")


def _covered(x: float, y: float) -> tuple[bool, bool]:
    """Whether the point is inside the rounded square, and inside a step or an edge."""
    cx, cy = min(max(x, CORNER), SIZE - CORNER), min(max(y, CORNER), SIZE - CORNER)
    inside = (x - cx) ** 2 + (y - cy) ** 2 <= CORNER ** 2
    mark = any((x - sx) ** 2 + (y - sy) ** 2 <= r * r for sx, sy, r in STEPS)
    for (ax, ay), (bx, by) in EDGES:
        dx, dy = bx - ax, by - ay
        t = max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy)))
        mark = mark or (x - ax - t * dx) ** 2 + (y - ay - t * dy) ** 2 <= (EDGE_WIDTH / 2) ** 2
    return inside, mark


def icon_png() -> bytes:
    """The same icon, RGBA, 4 samples per pixel for smooth edges."""
    rows = []
    for py in range(SIZE):
        row = bytearray(b"\0")  # filter: none
        for px in range(SIZE):
            samples = [_covered(px + dx, py + dy) for dx in (0.25, 0.75) for dy in (0.25, 0.75)]
            alpha = sum(inside for inside, _ in samples) / 4
            share = sum(inside and mark for inside, mark in samples) / max(1, sum(i for i, _ in samples))
            rgb = [round(b + (f - b) * share) for b, f in zip(BACKGROUND, FOREGROUND)]
            row += bytes([*rgb, round(alpha * 255)])
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
            + chunk(b"IEND", b""))


def write_section(path: Path, name: str, data: bytes) -> None:
    """Write data into the ELF section `name` of the file (it must fit)."""
    with open(path, "r+b") as f:
        elf = f.read()
        shoff = struct.unpack_from("<Q", elf, 0x28)[0]
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

        def header(index: int) -> tuple[int, ...]:
            return struct.unpack_from("<IIQQQQIIQQ", elf, shoff + index * shentsize)

        names = header(shstrndx)[4]
        for index in range(shnum):
            section = header(index)
            start = names + section[0]
            if elf[start:elf.index(b"\0", start)].decode() == name:
                if len(data) > section[5]:
                    raise ValueError(f"{name} holds {section[5]} bytes, not {len(data)}")
                f.seek(section[4])
                f.write(data.ljust(section[5], b"\0"))
                return
    raise ValueError(f"{path} has no section {name}")


def payload_check(payload: Path) -> bytes:
    """What the runtime checks the appended squashfs against before it mounts or extracts it:
    its length and CRC-32 (the runtime's struct: uint64, uint32, and 1 for "filled")."""
    crc = 0
    with open(payload, "rb") as f:
        while block := f.read(1 << 20):
            crc = zlib.crc32(block, crc)
    return struct.pack("<QII", payload.stat().st_size, crc, 1)


def make_appdir(bundle: Path, appdir: Path, version: str, homepage: str, date: str) -> None:
    shutil.rmtree(appdir, ignore_errors=True)
    (appdir / "usr").mkdir(parents=True)
    for part in SHIPPED:
        subprocess.run(["cp", "-al", str(bundle / part), str(appdir / "usr" / part)], check=True)
    (appdir / "AppRun").write_text(APPRUN)
    (appdir / "AppRun").chmod(0o755)
    desktop = DESKTOP.format(summary=SUMMARY, version=version)
    applications = appdir / "usr/share/applications"
    applications.mkdir(parents=True)
    for path in (appdir / "cwl-airflow.desktop", applications / "cwl-airflow.desktop"):
        path.write_text(desktop)
    svg, png = icon_svg(), icon_png()
    icons = appdir / "usr/share/icons/hicolor"
    for path, content in ((icons / "scalable/apps/cwl-airflow.svg", svg), (appdir / "cwl-airflow.svg", svg),
                          (icons / "256x256/apps/cwl-airflow.png", png), (appdir / ".DirIcon", png)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    metainfo = appdir / f"usr/share/metainfo/{APP_ID}.appdata.xml"
    metainfo.parent.mkdir(parents=True)
    metainfo.write_text(METAINFO.format(app_id=APP_ID, summary=SUMMARY, version=version, homepage=homepage,
                                        date=date))


def make_appimage(appdir: Path, runtime: Path, out: Path, update_info: str) -> None:
    payload = out.with_suffix(".squashfs")
    subprocess.run(["mksquashfs", str(appdir), str(payload), "-comp", "zstd", "-Xcompression-level", "15",
                    "-all-root", "-noappend", "-no-xattrs", "-no-progress", "-quiet"], check=True)
    shutil.copy(runtime, out)
    write_section(out, ".upd_info", update_info.encode())
    write_section(out, ".payload_crc", payload_check(payload))
    with open(out, "ab") as image, open(payload, "rb") as squashfs:
        shutil.copyfileobj(squashfs, image, 1 << 20)
    payload.unlink()
    out.chmod(0o755)
    with open(out, "rb") as image:
        digest = hashlib.file_digest(image, "sha256").hexdigest()
    Path(f"{out}.sha256").write_text(f"{digest}  {out.name}\n")
    # what an updater fetches first, published under the update information's name (`latest`);
    # its URL names this version's image, relative to where the .zsync is
    subprocess.run(["zsyncmake", "-u", out.name, "-o", f"{out.name}.zsync", out.name], cwd=out.parent, check=True,
                   stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--name", required=True, help="the AppImage's name, without .AppImage")
    parser.add_argument("--runtime", type=Path, required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--update-url", required=True, help="where <name>.AppImage.zsync is published")
    parser.add_argument("--homepage", default="https://www.commonwl.org/")
    args = parser.parse_args(argv)
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    date = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).date() if epoch
            else datetime.date.today()).isoformat()
    appdir = args.out_dir / "AppDir"
    make_appdir(args.bundle, appdir, args.version, args.homepage, date)
    out = args.out_dir / f"{args.name}.AppImage"
    zsync = f"{args.update_url.rstrip('/')}/{args.name.replace(args.version, 'latest')}.AppImage.zsync"
    make_appimage(appdir, args.runtime, out, f"zsync|{zsync}")
    shutil.rmtree(appdir)
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
