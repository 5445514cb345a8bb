"""JWTs of triggers and reports; report payloads; the outbox and its delivery."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cwl_airflow import reports
from cwl_airflow.config import Settings
from cwl_airflow.signing import SignatureError, sign_trigger, verify_trigger


def key_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode(),
            key.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo).decode())


PRIVATE, PUBLIC = key_pair()
CONF = {"job": {"name": "x"}}


AUD = "appliance.example"
LIFE = 600


def trigger(claims_update=None, key=PRIVATE, algorithm="RS256", drop=(), **claims):
    """A token like sign_trigger's for dag d, run r1, CONF, with claims changed or dropped."""
    now = int(time.time())
    body = {"dag_id": "d", "run_id": "r1", "conf": CONF, "aud": AUD, "iat": now, "exp": now + 60,
            "jti": "0123456789abcdef", **claims}
    return jwt.encode({k: v for k, v in body.items() if k not in drop}, key, algorithm=algorithm)


def hs256_keyed_with_the_public_key() -> str:
    """The classic key-confusion forgery (PyJWT will not make it, so it is made by hand)."""
    def part(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    now = int(time.time())
    claims = {"dag_id": "d", "run_id": "r1", "conf": CONF, "aud": AUD, "iat": now, "exp": now + 60, "jti": "x" * 16}
    signed = part(b'{"alg":"HS256","typ":"JWT"}') + b"." + part(json.dumps(claims).encode())
    return (signed + b"." + part(hmac.new(PUBLIC.encode(), signed, hashlib.sha256).digest())).decode()


def verify(token, dag_id="d", run_id="r1"):
    return verify_trigger(token, dag_id, run_id, CONF, PUBLIC, "RS256", AUD, LIFE)


def test_a_signed_trigger_verifies():
    assert verify(sign_trigger("d", "r1", CONF, AUD, PRIVATE, "RS256"))["dag_id"] == "d"
    claims = verify(sign_trigger("d", None, {"job": {"name": "x"}}, AUD, PRIVATE, "RS256"), run_id=None)
    assert claims["exp"] - claims["iat"] == 300 and len(claims["jti"]) == 32
    assert verify(trigger()) and verify(trigger(iat=int(time.time()) + 10))  # a clock a little ahead


@pytest.mark.parametrize(("token", "reason"), [
    (None, "accepts only signed triggers"),
    ("not-a-jwt", "invalid signature"),
    (trigger(key=key_pair()[0]), "invalid signature"),  # forged
    (trigger(exp=int(time.time()) - 60), "expired"),
    (trigger(run_id="r2"), "another run_id"),
    (trigger(conf={"job": {"name": "y"}}), "another conf"),
    (trigger(dag_id="other"), "another workflow"),  # a signature for workflow A does not start B
    (trigger(aud="other.example"), "another appliance"),
    (trigger(drop=("aud",)), "aud"),
    (trigger(drop=("exp",)), "exp"),  # valid for ever: refused
    (trigger(drop=("iat",)), "iat"),
    (trigger(drop=("jti",)), "jti"),
    (trigger(drop=("dag_id",)), "dag_id"),
    (trigger(drop=("conf",)), "conf"),
    (trigger(exp=int(time.time()) + LIFE + 60), "lifetime"),
    (trigger(iat=int(time.time()) + 3600, exp=int(time.time()) + 3660), "not yet valid"),
    (trigger(jti="a/b"), "jti must match"),
    (jwt.encode({"dag_id": "d", "conf": CONF}, "a shared secret of 32 bytes or more", algorithm="HS256"),
     "invalid signature"),
    (hs256_keyed_with_the_public_key(), "invalid signature"),
    (jwt.encode({"run_id": "r1", "conf": CONF}, None, algorithm="none"), "invalid signature"),
])
def test_bad_triggers_are_refused_with_a_reason(token, reason):
    with pytest.raises(SignatureError, match=reason):
        verify(token)


def test_every_pyjwt_error_is_a_signature_error():
    """A configured shared-secret algorithm is refused by the settings; should one reach the
    check anyway, PyJWT's key errors are refusals, not crashes."""
    with pytest.raises(SignatureError, match="invalid signature"):
        verify_trigger(hs256_keyed_with_the_public_key(), "d", "r1", CONF, PUBLIC, "HS256", AUD, LIFE)


def test_settings_refuse_a_shared_secret_algorithm(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CWL__JWT_ALGORITHM", "HS256")
    with pytest.raises(ValueError, match="jwt_algorithm 'HS256'"):
        Settings.load(use_airflow=False)


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
    decoded = [jwt.decode(body["payload"], PUBLIC, algorithms=["RS256"], audience=receiver + path,
                          options={"require": ["exp", "iat", "seq"]}) for path, body in
               ((p.removeprefix("/reports"), b) for p, b in Receiver.received)]
    assert [d.get("progress") for d in decoded] == [20, 40, 100, None]
    assert [d["seq"] for d in decoded] == [1, 2, 3, 4]
    assert all(d["exp"] - d["iat"] == reports.REPORT_LIFETIME for d in decoded)
    reports.put(tmp_path, receiver, "progress", reports.progress("d", "r2", "running", 0))
    assert reports.deliver_once(tmp_path, PRIVATE, "RS256")  # the sequence goes on, also after a restart
    assert jwt.decode(Receiver.received[-1][1]["payload"], PUBLIC, algorithms=["RS256"],
                      audience=receiver + "/progress")["seq"] == 5
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
