"""The portable tarball (make portable), on test hosts of Debian 11, 12 and 13 with no python3:
a normal user unpacks it with the tools of a minimal Debian at a path with a space, and its
commands work from there, through a symlink and after the tree is moved; `cwl-airflow up` runs the
platform in the foreground and `cwl-airflow run` runs a workflow with JavaScript, scatter and a
subworkflow through it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest

from artifact_tests import EXPECTED, WORKFLOW, suites
from testhosts import facts, one_host
from testhosts.images import busybox_archive
from testhosts.normal_user import DOCKER_WORKFLOW, NormalUser

NAME = facts.TARBALL


@pytest.fixture(scope="module")
def tarball(portable_artifacts) -> Path:
    return portable_artifacts / "portable" / f"{NAME}.tar.gz"


def test_each_archive_comes_with_its_checksum_and_both_hold_the_same_tree(tarball):
    listings = []
    for archive, option in ((tarball, "--gzip"), (tarball.with_name(f"{NAME}.tar.zst"), "--zstd")):
        digest, name = Path(f"{archive}.sha256").read_text().split()
        assert name == archive.name
        assert digest == hashlib.sha256(archive.read_bytes()).hexdigest()
        listings.append(subprocess.run(["tar", option, "-tvf", archive], capture_output=True, text=True,
                                       check=True).stdout)
    assert listings[0] == listings[1]
    assert f"{NAME}/bin/cwl-airflow" in listings[0]
    assert "/site-packages/pip/" not in listings[0] and "/ensurepip/_bundled/pip-" in listings[0]  # pip on demand
    assert tarball.with_name(f"{NAME}.tar.zst").stat().st_size < 0.8 * tarball.stat().st_size


BUNDLE = f"$HOME/my tools/{NAME}"


def unpacked_by_a_user(suite: str, settings, tarball: Path, devices: tuple[str, ...] = ()):
    with one_host(f"portable-{suite}", settings, suite, devices=devices) as host:
        user = NormalUser(host, suite, [tarball, WORKFLOW, DOCKER_WORKFLOW])
        user(f'mkdir "$HOME/my tools" && tar -xzf /var/tmp/{tarball.name} -C "$HOME/my tools"')
        yield user


@pytest.fixture(params=suites("bullseye"))  # the oldest glibc the bundle supports
def user(request, settings, tarball):
    yield from unpacked_by_a_user(request.param, settings, tarball)


@pytest.fixture(params=suites("bookworm"))  # Podman's test in CI: one release that the other tests do not run
def podman_user(request, settings, tarball):
    # rootless Podman stores images with fuse-overlayfs where it is installed (Debian 11 and 13)
    yield from unpacked_by_a_user(request.param, settings, tarball, devices=("/dev/fuse",))


def test_its_commands_run_anywhere(user):
    user(f'mkdir "$HOME/bin" && ln -s "{BUNDLE}/bin/cwltool" "$HOME/bin/cwltool"')
    runs = {
        "in place": f'"{BUNDLE}/bin/cwltool"',
        "through a symlink, from another folder": 'cd / && "$HOME/bin/cwltool"',
        "after a move": f'mv "$HOME/my tools" "$HOME/moved tools" && "$HOME/moved tools/{NAME}/bin/cwltool"',
    }
    for how, cwltool in runs.items():
        out = user(f'{cwltool} --quiet --outdir "$HOME/out" /var/tmp/{WORKFLOW.name} /var/tmp/job.json')
        assert json.loads(out.stdout) == EXPECTED, how
    assert "cwl-airflow" in user(f'"$HOME/moved tools/{NAME}/bin/cwl-airflow" --help').stdout
    assert user(f'"$HOME/moved tools/{NAME}/bin/airflow" version').stdout.strip().startswith("3.")


def test_up_runs_the_platform_and_leaves_nothing_when_stopped(user):
    unwritable = user(f'mkdir "$HOME/locked" && chmod 0555 "$HOME/locked" && '
                      f'CWL_AIRFLOW_HOME="$HOME/locked/home" "{BUNDLE}/bin/cwl-airflow" up', check=False)
    assert unwritable.returncode == 2 and "cannot write to /home/someone/locked/home (Permission denied)" in \
        unwritable.stderr, unwritable.stderr
    assert user('ls -A "$HOME/locked"').stdout == "" and user.processes() == []
    # as a terminal's foreground job: a group of its own, SIGINT not ignored (sh ignores it for `&`)
    user(f'setsid env --default-signal=INT "{BUNDLE}/bin/cwl-airflow" up > "$HOME/up.log" 2>&1 < /dev/null &')
    start, log = time.monotonic(), ""
    while "ready:" not in log and time.monotonic() - start < 240:
        time.sleep(2)
        log = user('cat "$HOME/up.log"', check=False).stdout
    assert "ready:" in log, log[-3000:]
    print(f"{user.suite}: up to healthy in {time.monotonic() - start:.0f} s")
    assert "no container engine this user may use" in log  # these hosts have no Docker
    busy = user(f'CWL_AIRFLOW_HOME="$HOME/second home" "{BUNDLE}/bin/cwl-airflow" up', check=False)
    assert busy.returncode == 2 and f"port {facts.API_PORT} on 127.0.0.1 is in use" in busy.stderr, busy.stderr
    out = user(f'cd "$HOME" && "{BUNDLE}/bin/cwl-airflow" run --quiet --outdir "$HOME/out" '
               f'/var/tmp/{WORKFLOW.name} /var/tmp/job.json')
    assert json.loads(out.stdout) == EXPECTED
    refused = user(f'cd "$HOME" && echo \'{{"name": "x"}}\' > named.json && "{BUNDLE}/bin/cwl-airflow" run --quiet '
                   f'/var/tmp/{DOCKER_WORKFLOW.name} named.json', check=False)
    assert refused.returncode == 1 and all(w in refused.stderr for w in ("Docker", "Podman", "--no-container"))
    second = user(f'"{BUNDLE}/bin/cwl-airflow" up', check=False)
    assert second.returncode == 2 and "another `cwl-airflow up` runs" in second.stderr
    # Ctrl-C: the terminal's SIGINT reaches up's process group (each daemon has a session of its own)
    user('kill -INT "-$(cat "$HOME/.local/share/cwl-airflow/up.lock")"')  # dash's kill takes no --
    deadline = time.monotonic() + 60
    while user.processes() and time.monotonic() < deadline:
        time.sleep(1)
    assert user.processes() == [], "left running after Ctrl-C"
    assert "stopped" in user('tail -n 3 "$HOME/up.log"').stdout


def test_its_docker_steps_run_in_the_users_docker(user, settings):
    """Where the user may use Docker (group docker), `up` picks it and DockerRequirement steps run in it."""
    user.use_docker(busybox_archive(settings))
    user(f'setsid "{BUNDLE}/bin/cwl-airflow" up > "$HOME/up.log" 2>&1 < /dev/null &')
    assert "containers: docker" in user.wait_for("$HOME/up.log", "ready:")
    user.run_in_docker(f'"{BUNDLE}/bin/cwl-airflow"')
    user('kill -TERM "$(cat "$HOME/.local/share/cwl-airflow/up.lock")"')
    user.wait_for("$HOME/up.log", "stopped")


def test_its_docker_steps_run_in_the_users_podman_where_there_is_no_docker(podman_user, settings):
    """No Docker on the host, Debian's Podman rootless for the user: `up` picks Podman and
    DockerRequirement steps run in it (cwltool --podman); with no engine they are refused, as
    test_up_runs_the_platform_and_leaves_nothing_when_stopped shows."""
    user = podman_user
    user.use_podman(busybox_archive(settings))
    assert user("command -v docker", check=False).returncode != 0
    podmans_own = set(user.processes())  # rootless Podman's pause process, which holds the user's namespace
    user(f'setsid "{BUNDLE}/bin/cwl-airflow" up > "$HOME/up.log" 2>&1 < /dev/null &')
    assert "containers: podman" in user.wait_for("$HOME/up.log", "ready:")
    user.run_container_workflow(f'"{BUNDLE}/bin/cwl-airflow"')
    user('kill -TERM "$(cat "$HOME/.local/share/cwl-airflow/up.lock")"')
    user.wait_for("$HOME/up.log", "stopped")
    assert set(user.processes()) - podmans_own == set()


def test_a_user_unit_supervises_up_and_restarts_a_killed_daemon(user):
    """`cwl-airflow user-unit` under the user's own service manager (no login): up
    comes up, a daemon killed with -9 makes up exit 1 naming it and systemd start it again;
    `systemctl --user stop` leaves no process of the bundle."""
    runtime = user.start_user_manager()
    print(user(f'{runtime} "{BUNDLE}/bin/cwl-airflow" user-unit --port 8090').stdout)
    user.wait_in_journal("cwl-airflow.service", "ready:")
    user('pkill -KILL -u someone -f "[a]irflow scheduler"')  # [a]: not this shell's own command line
    user.wait_in_journal("cwl-airflow.service", "scheduler exited with status -9")
    user.wait_in_journal("cwl-airflow.service", "ready:", 2)  # systemd started up again
    user(f"{runtime} systemctl --user stop cwl-airflow")
    assert user.processes_but_the_user_manager() == []
