"""JWTs of triggers and reports; report payloads; the outbox and its delivery."""

from __future__ import annotations

import http.server
import json
import threading


import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cwl_airflow import reports
from cwl_airflow.signing import SignatureError, sign, verify_trigger


def key_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode(),
            key.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo).decode())


PRIVATE, PUBLIC = key_pair()
CONF = {"job": {"name": "x"}}


def test_a_signed_trigger_verifies():
    verify_trigger(sign({"run_id": "r1", "conf": CONF}, PRIVATE, "RS256", 60), "r1", CONF, PUBLIC, "RS256")
    verify_trigger(sign({"run_id": None, "conf": {"job": {"name": "x"}}}, PRIVATE, "RS256"), None, CONF, PUBLIC, "RS256")


@pytest.mark.parametrize(("token", "reason"), [
    (None, "accepts only signed triggers"),
    ("not-a-jwt", "invalid signature"),
    (sign({"run_id": "r1", "conf": CONF}, key_pair()[0], "RS256"), "invalid signature"),  # forged
    (sign({"run_id": "r1", "conf": CONF}, PRIVATE, "RS256", lifetime=-1), "expired"),
    (sign({"run_id": "r2", "conf": CONF}, PRIVATE, "RS256"), "another run_id"),
    (sign({"run_id": "r1", "conf": {"job": {"name": "y"}}}, PRIVATE, "RS256"), "another conf"),
    (sign({"run_id": "r1"}, PRIVATE, "RS256"), "invalid signature"),  # no conf claim
    (jwt.encode({"run_id": "r1", "conf": CONF}, "secret", algorithm="HS256"), "invalid signature"),
])
def test_bad_triggers_are_refused_with_a_reason(token, reason):
    with pytest.raises(SignatureError, match=reason):
        verify_trigger(token, "r1", CONF, PUBLIC, "RS256")


def test_report_payloads():
    assert reports.progress("d", "r", "running", 40) == {"dag_id": "d", "run_id": "r", "state": "running",
                                                         "progress": 40, "error": ""}
    assert reports.status("d", "r", "t", "failed") == {"dag_id": "d", "run_id": "r", "task_id": "t", "state": "failed"}
    assert reports.results("d", "r", {"o": 1}) == {"dag_id": "d", "run_id": "r", "results": {"o": 1}}
    assert reports.percent_done({"a": "success", "b": "skipped", "c": "running", "d": None}) == 50
    assert reports.percent_done({}) == 0
    assert reports.endpoint_url("rcv", "https", 8443, {"endpoint": "/api/reports/"}) == "https://rcv:8443/api/reports"
    assert reports.endpoint_url("http://rcv", None, None, {}) == "http://rcv/"


class Receiver(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, dict]] = []
    status = 200

    def do_POST(self):
        Receiver.received.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
        self.send_response(Receiver.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Receiver.received, Receiver.status = [], 200
    yield f"http://127.0.0.1:{server.server_port}/reports"
    server.shutdown()


def test_outbox_delivers_in_order_signed(receiver, tmp_path):
    for percent in (20, 40, 100):
        reports.put(tmp_path, receiver, "progress", reports.progress("d", "r", "running", percent))
    reports.put(tmp_path, receiver, "results", reports.results("d", "r", {"o": 1}))
    assert reports.deliver_once(tmp_path, PRIVATE, "RS256")
    assert [p for p, _ in Receiver.received] == ["/reports/progress"] * 3 + ["/reports/results"]
    decoded = [jwt.decode(body["payload"], PUBLIC, algorithms=["RS256"]) for _, body in Receiver.received]
    assert [d.get("progress") for d in decoded] == [20, 40, 100, None]
    assert list(tmp_path.glob("*.json")) == []


def test_unsigned_reports_are_plain_json(receiver, tmp_path):
    reports.put(tmp_path, receiver, "status", reports.status("d", "r", "t", "running"))
    assert reports.deliver_once(tmp_path, "", "RS256")
    assert Receiver.received == [("/reports/status", {"dag_id": "d", "run_id": "r", "task_id": "t", "state": "running"})]


def test_reports_wait_while_the_receiver_is_down(receiver, tmp_path):
    down = "http://127.0.0.1:9/reports"  # nothing listens on the discard port
    reports.put(tmp_path, down, "progress", reports.progress("d", "r", "running", 10))
    assert not reports.deliver_once(tmp_path, "", "RS256", timeout=2)
    assert len(list(tmp_path.glob("*.json"))) == 1  # kept for the next try
    Receiver.status = 503
    reports.put(tmp_path, receiver, "progress", reports.progress("d", "r2", "running", 10))
    [first] = sorted(tmp_path.glob("*.json"))[:1]
    first.unlink()  # leave only the report for the receiver that answers 503
    assert not reports.deliver_once(tmp_path, "", "RS256")
    assert len(list(tmp_path.glob("*.json"))) == 1
    Receiver.status = 200
    assert reports.deliver_once(tmp_path, "", "RS256")
    assert list(tmp_path.glob("*.json")) == []


def test_a_refused_report_is_set_aside(receiver, tmp_path):
    Receiver.status = 400
    reports.put(tmp_path, receiver, "status", reports.status("d", "r", "t", "running"))
    reports.put(tmp_path, receiver, "status", reports.status("d", "r", "t", "success"))
    assert reports.deliver_once(tmp_path, "", "RS256")
    assert len(list((tmp_path / "refused").glob("*.json"))) == 2
