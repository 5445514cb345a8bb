"""JWTs: triggers signed by a client's private key, reports signed by the appliance's.

A trigger's token names what it may start and where: the workflow (`dag_id`), the run id (or
none), the conf, the appliance (`aud`), and when it was made and ends (`iat`, `exp`, at most
`max_signature_lifetime` apart). Its `jti` becomes the run id when the trigger names none, so
that Airflow's unique run ids refuse a replay for as long as the run exists.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import jwt

CLOCK_SKEW = 30  # seconds of clock difference tolerated between signer and appliance
TRIGGER_CLAIMS = ("exp", "iat", "aud", "jti", "dag_id", "conf")
JTI = re.compile(r"[A-Za-z0-9_.~:+-]{8,100}")  # also an Airflow run id


class SignatureError(Exception):
    """Why a signed trigger was refused (sent to the client with a 403)."""


def sign(claims: dict[str, Any], private_key: str, algorithm: str, lifetime: int) -> str:
    """A JWT over the claims, with iat, exp (lifetime seconds later) and a jti of its own."""
    now = int(time.time())
    return jwt.encode({"jti": uuid.uuid4().hex, **claims, "iat": now, "exp": now + lifetime},
                      private_key, algorithm=algorithm)


def sign_trigger(dag_id: str, run_id: str | None, conf: dict[str, Any], audience: str, private_key: str,
                 algorithm: str, lifetime: int = 300) -> str:
    return sign({"dag_id": dag_id, "run_id": run_id, "conf": conf, "aud": audience}, private_key, algorithm, lifetime)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def verify_trigger(token: str | None, dag_id: str, run_id: str | None, conf: dict[str, Any], public_key: str,
                   algorithm: str, audience: str, max_lifetime: int) -> dict[str, Any]:
    """The token's claims when it was signed by the matching private key for exactly this trigger."""
    if not token:
        raise SignatureError("this appliance accepts only signed triggers: add 'signature', a JWT over "
                             "dag_id, run_id and conf with aud, iat, exp and jti")
    try:
        claims = jwt.decode(token, public_key, algorithms=[algorithm], audience=audience, leeway=CLOCK_SKEW,
                            options={"require": list(TRIGGER_CLAIMS)})
    except jwt.ExpiredSignatureError:
        raise SignatureError("the signature has expired") from None
    except jwt.InvalidAudienceError:
        raise SignatureError(f"the signature was made for another appliance (aud must be {audience!r})") from None
    except jwt.PyJWTError as err:  # every other error of PyJWT, keys of the wrong kind included
        raise SignatureError(f"invalid signature: {err}") from None
    if claims["exp"] - claims["iat"] > max_lifetime:
        raise SignatureError(f"the signature's lifetime (exp - iat) exceeds {max_lifetime} s")
    if not (isinstance(claims["jti"], str) and JTI.fullmatch(claims["jti"])):
        raise SignatureError(f"invalid signature: jti must match {JTI.pattern}")
    if claims["dag_id"] != dag_id:
        raise SignatureError("the signature was made for another workflow")
    if claims.get("run_id") != run_id:
        raise SignatureError("the signature was made for another run_id")
    if _canonical(claims["conf"]) != _canonical(conf):
        raise SignatureError("the signature was made for another conf")
    return claims
