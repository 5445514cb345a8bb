"""The docker role: engine from Debian, daemon.json, image preloaded from an archive."""

import json

from testhosts.images import BUSYBOX_TAG


def test_engine_enabled_and_running(host):
    service = host.service("docker")
    assert service.is_enabled
    assert service.is_running


def test_daemon_options(host):
    options = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert options["log-opts"]["max-size"] == "10m"
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["LoggingDriver"] == "json-file"


def test_preloaded_image_runs(host):
    out = host.check_output("docker run --rm --network none %s sh -c 'echo $((6*7))'", BUSYBOX_TAG)
    assert out == "42"


def test_image_loaded_without_a_registry(host):
    assert host.check_output("docker image ls --format '{{.Repository}}:{{.Tag}}'").split() == [BUSYBOX_TAG]
