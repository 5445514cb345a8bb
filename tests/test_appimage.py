"""The AppImage (make appimage): a type-2 image of the portable bundle behind the project's
runtime, on test hosts of Debian 11, 12 and 13 with no python3, run by a normal user from a path
with a space: first where FUSE cannot be used (no fuse3, /dev/fuse root's only: the runtime extracts and runs by
itself), then with FUSE; `up` until healthy, a workflow through `run`, SIGTERM, Ctrl-C and
kill -9 of the image's process, and what the next `up` cleans."""

from __future__ import annotations

import hashlib
import json
import re
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from browser import Browser
from artifact_tests import EXPECTED, WORKFLOW, suites
from portable.appimage import APP_ID
from testhosts import facts, one_host
from testhosts.images import busybox_archive
from testhosts.normal_user import DOCKER_WORKFLOW, NormalUser

REPO = Path(__file__).resolve().parents[1]
VERSION, NAME = facts.VERSION, facts.APPIMAGE
APP = f"$HOME/my tools/{NAME}"
HOME = "$HOME/.local/share/cwl-airflow"


@pytest.fixture(scope="module")
def appimage(portable_artifacts) -> Path:
    return portable_artifacts / "appimage" / NAME


def elf_section(data: bytes, name: str) -> bytes:
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names = headers[shstrndx][4]
    for header in headers:
        start = names + header[0]
        if data[start:data.index(b"\0", start)] == name.encode():
            return data[header[4]:header[4] + header[5]]
    raise AssertionError(f"no section {name}")


def test_the_file_is_a_type2_appimage_with_its_checksum(appimage, tmp_path):
    data = appimage.read_bytes()
    assert data[:4] == b"\x7fELF" and data[8:11] == b"AI\x02"
    digest, name = Path(f"{appimage}.sha256").read_text().split()
    assert (digest, name) == (hashlib.sha256(data).hexdigest(), NAME)
    offset = int(subprocess.run([appimage, "--appimage-offset"], capture_output=True, text=True, check=True).stdout)
    assert data[offset:offset + 4] == b"hsqs"  # the squashfs right after the ELF
    update = elf_section(data, ".upd_info").rstrip(b"\0").decode()
    assert update.startswith("zsync|") and update.endswith("cwl-airflow-latest-x86_64.AppImage.zsync")
    assert len(elf_section(data, ".sha256_sig")) >= 512
    assert struct.unpack("<QII", elf_section(data, ".payload_crc")) == (len(data) - offset, zlib.crc32(data[offset:]), 1)
    program = subprocess.run(["readelf", "--program-headers", "--dynamic", appimage], capture_output=True, text=True,
                             check=True).stdout
    assert "INTERP" not in program and "(NEEDED)" not in program  # the runtime is static: no loader, no library
    header = Path(f"{appimage}.zsync").read_bytes().split(b"\n\n", 1)[0].decode()
    fields = dict(line.split(": ", 1) for line in header.splitlines())
    assert (fields["Filename"], fields["URL"], int(fields["Length"])) == (NAME, NAME, len(data))
    assert fields["SHA-1"] == hashlib.sha1(data).hexdigest()
    assert VERSION in subprocess.run([appimage, "--appimage-version"], capture_output=True, text=True).stdout
    subprocess.run([appimage, "--appimage-extract", "cwl-airflow.desktop"], cwd=tmp_path, check=True)
    assert [p.name for p in (tmp_path / "squashfs-root").iterdir()] == ["cwl-airflow.desktop"]


@pytest.fixture(params=suites("bookworm"))  # the one whose chromium looks at the UI
def user(request, settings, appimage):
    with one_host(f"appimage-{request.param}", settings, request.param, devices=["/dev/fuse"]) as host:
        user = NormalUser(host, request.param, [appimage, WORKFLOW, DOCKER_WORKFLOW])
        user(f'mkdir "$HOME/my tools" && cp /var/tmp/{NAME} "{APP}" && chmod +x "{APP}"')
        yield user


def start_up(user, log: str) -> None:
    # as a terminal's foreground job: a group of its own, SIGINT not ignored (sh ignores it for `&`)
    user(f'cd "$HOME" && setsid env --default-signal=INT "{APP}" > "$HOME/{log}" 2>&1 < /dev/null &')
    user.wait_for(f"$HOME/{log}", "ready:")


def up_pid(user) -> str:
    return user(f'cat "{HOME}/up.lock"').stdout.strip()


def stopped(user) -> bool:
    return (user.processes_but_the_user_manager() == []
            and user("ls -d /tmp/.mount_* 2>/dev/null", check=False).stdout == "")


def wait_stopped(user) -> None:
    deadline = time.monotonic() + 90
    while not stopped(user):
        assert time.monotonic() < deadline, (user.processes(), user("ls -d /tmp/.mount_*", check=False).stdout)
        time.sleep(1)


def with_fuse(user) -> None:
    user.install("fuse3")
    user.host.exec("chmod", "0666", "/dev/fuse")


def test_it_runs_the_platform_without_fuse_and_with_it(user):
    # no fuse3 (and /dev/fuse root's only): the runtime says why once and runs an extracted copy
    start_up(user, "no-fuse.log")
    log = user('cat "$HOME/no-fuse.log"').stdout
    assert log.count("FUSE is not usable here (") == 1 and "running from an extracted copy" in log, log[:2000]
    user(f'kill -TERM {up_pid(user)}')
    wait_stopped(user)

    with_fuse(user)
    start_up(user, "fuse.log")
    assert "FUSE is not usable" not in user('cat "$HOME/fuse.log"').stdout
    assert "fuse.appimage" in user("cat /proc/mounts").stdout
    out = user(f'cd "$HOME" && "{APP}" run --quiet --outdir "$HOME/out" /var/tmp/{WORKFLOW.name} /var/tmp/job.json')
    assert json.loads(out.stdout) == EXPECTED
    if user.suite == "bookworm":
        look_at_the_ui(user, user('cat "$HOME/fuse.log"').stdout)
    user(f'kill -INT -{up_pid(user)}')  # Ctrl-C: the image's process group (its FUSE server has a session of its own)
    wait_stopped(user)

    # kill -9 of the image's process: the next up stops what it left and cleans the mount
    start_up(user, "killed.log")
    user(f'kill -KILL {up_pid(user)}')
    start_up(user, "after.log")
    assert "left by an earlier up" in user('cat "$HOME/after.log"').stdout
    listed = user(f'"{APP}" status').stdout
    assert "cwl_features" in listed  # the workflow run before the kill is still known
    user(f'kill -TERM {up_pid(user)}')
    wait_stopped(user)

    if user.suite == "bookworm":  # the AppDir's metadata, checked by the freedesktop tools
        user.install("desktop-file-utils", "appstream")
        user(f'cd "$HOME" && "{APP}" --appimage-extract >/dev/null')
        root = "$HOME/squashfs-root"
        user(f'desktop-file-validate "{root}/cwl-airflow.desktop"')
        user(f'appstreamcli validate --no-net "{root}/usr/share/metainfo/{APP_ID}.appdata.xml"')
        icon = (user.host.root / "home/someone/squashfs-root/.DirIcon").read_bytes()
        assert icon[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", icon[16:24]) == (256, 256)


def test_its_docker_steps_run_in_the_users_docker(user, settings):
    """Where the user may use Docker (group docker), the image's `up` picks it and
    DockerRequirement steps run in it; stopping leaves no process and no mount."""
    user.use_docker(busybox_archive(settings))
    with_fuse(user)
    start_up(user, "docker.log")
    assert "containers: docker" in user('cat "$HOME/docker.log"').stdout
    user.run_in_docker(f'"{APP}"')
    user(f'kill -TERM {up_pid(user)}')
    wait_stopped(user)


def test_a_user_unit_runs_the_image_itself_and_its_stop_leaves_nothing(user):
    """`<AppImage> user-unit`: the unit's ExecStart is the image (not a path inside its mount, which
    lives only as long as the image runs); systemd supervises it; stopping it leaves no process
    and no mount (upstream type2-runtime #99: stale mounts under systemd)."""
    with_fuse(user)
    runtime = user.start_user_manager()
    user(f'{runtime} "{APP}" user-unit --port 8090')
    unit = user('cat "$HOME/.config/systemd/user/cwl-airflow.service"').stdout
    assert f'ExecStart="/home/someone/my tools/{NAME}" up' in unit, unit
    user.wait_in_journal("cwl-airflow.service", "ready:")
    assert "fuse.appimage" in user("cat /proc/mounts").stdout
    user(f"{runtime} systemctl --user stop cwl-airflow")
    wait_stopped(user)


def test_a_damaged_image_or_an_unusable_folder_gets_its_reason_and_leaves_nothing(user):
    """Bad input, first without FUSE (the runtime would extract) and then with it: a copy of the
    image cut short and one with four bytes changed, an extraction folder the user may not write,
    one mounted noexec, one too small for the image, and --appimage-extract where the user may not
    write. Each ends within seconds with exit status 127 and its reason, and leaves no extracted
    file, no staging folder and no mount. An extraction killed midway is cleaned by the next start."""
    size = int(user(f'stat -c %s "{APP}"').stdout)
    cut, damaged = "$HOME/my tools/cut.AppImage", "$HOME/my tools/damaged.AppImage"
    user(f'head -c {size // 2} "{APP}" > "{cut}" && cp "{APP}" "{damaged}" && chmod +x "{cut}" "{damaged}" && '
         f'printf "\\377\\377\\377\\377" | dd of="{damaged}" bs=1 seek={size * 3 // 4} conv=notrunc status=none')
    user('mkdir "$HOME/locked" "$HOME/noexec" "$HOME/small" && chmod 0555 "$HOME/locked"')
    user.host.exec("mount", "-t", "tmpfs", "-o", "noexec,mode=0777", "tmpfs", "/home/someone/noexec")
    user.host.exec("mount", "-t", "tmpfs", "-o", "size=8m,mode=0777", "tmpfs", "/home/someone/small")
    always = {
        f'"{cut}" status': f"the file is cut short ({size // 2} of {size} bytes): download it again",
        f'"{damaged}" status': "the file is damaged (its payload's CRC-32 is not the one it was built with)",
        f'cd "$HOME/locked" && "{damaged}" --appimage-extract': "the file is damaged",
        f'cd "$HOME/locked" && "{APP}" --appimage-extract': "cannot extract into squashfs-root: Permission denied",
    }
    without_fuse = {  # where the runtime extracts to run (with FUSE it extracts nothing)
        f'XDG_CACHE_HOME="$HOME/locked" "{APP}" status': "cannot extract into /home/someone/locked/appimage/",
        f'XDG_CACHE_HOME="$HOME/noexec" "{APP}" status': "/home/someone/noexec/appimage is on a file system "
                                                          "mounted noexec, so nothing extracted there can run",
        f'XDG_CACHE_HOME="$HOME/small" "{APP}" status': "No space left on device",
    }

    def refused(with_fuse: bool, cases: dict[str, str]) -> None:
        for command, reason in cases.items():
            out = user(f"timeout 60 sh -c '{command}'", check=False)
            assert out.returncode == 127 and reason in out.stderr, (with_fuse, command, out.returncode, out.stderr)
            left = user('ls -A "$HOME/locked" "$HOME/noexec" "$HOME/small" "$HOME/.cache" /tmp', check=False).stdout
            assert "squashfs-root" not in left and "cwl-airflow" not in left and ".mount_" not in left, (command, left)
            assert user.processes() == [], (command, user.processes())

    refused(with_fuse=False, cases=always | without_fuse)
    # killed (-9) while it extracts: the next start removes the half-extracted staging folder
    user(f'"{APP}" --help > /dev/null 2>&1 & i=0; until ls "$HOME/.cache/appimage" 2>/dev/null | grep -q partial; '
         f'do sleep 0.1; i=$((i + 1)); [ $i -lt 600 ] || exit 1; done; kill -KILL $!')
    assert "partial-" in user('ls "$HOME/.cache/appimage"').stdout
    user(f'"{APP}" --help > /dev/null')
    assert "partial-" not in user('ls "$HOME/.cache/appimage"').stdout
    with_fuse(user)
    refused(with_fuse=True, cases=always)
    assert "fuse.appimage" not in user("cat /proc/mounts").stdout


SCREENSHOT = REPO / "build/test-logs/appimage-ui.png"  # the README's docs/images/airflow-ui.png comes from here


def look_at_the_ui(user, log: str) -> None:
    """The Airflow UI the AppImage serves, in headless Chromium: log in with the generated
    password, find the example workflow's DAG and its finished run."""
    url, passwords = re.search(r"ready: (\S+) \(user admin, password in (.+)\)", log).groups()
    password = json.loads(user(f'cat "{passwords}"').stdout)["admin"]
    dag_id = re.search(r"cwl_features_[0-9a-f]{12}", user(f'"{APP}" status').stdout).group(0)
    user.install("chromium")
    with Browser(user.host, "someone") as browser:
        browser.open(url)
        browser.wait_for("!!document.querySelector('input[type=password]')", "the login form")
        browser.type_into("input:not([type=password])", "admin")
        browser.type_into("input[type=password]", password)
        browser.evaluate("document.querySelector('button[type=submit]').click()")
        browser.wait_for("!location.pathname.startsWith('/auth')", "the page after logging in")
        browser.open(f"{url}/dags/{dag_id}/runs")
        browser.wait_for(f"document.body.innerText.includes({json.dumps(dag_id)})", "the workflow's DAG")
        browser.wait_for("document.body.innerText.includes('Success')", "its finished run")
        browser.open(f"{url}/dags/{dag_id}")  # the overview, with a task per step in the grid
        browser.wait_for("document.body.innerText.includes('CWLJobGatherer')", "the workflow's tasks")
        time.sleep(2)  # the charts draw themselves
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(browser.screenshot())
