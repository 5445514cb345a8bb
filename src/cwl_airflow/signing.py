"""JWTs: triggers signed by a client's private key, reports signed by the appliance's."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt


class SignatureError(Exception):
    """Why a signed trigger was refused (sent to the client with a 403)."""


def sign(claims: dict[str, Any], private_key: str, algorithm: str, lifetime: int | None = None) -> str:
    claims = dict(claims, iat=int(time.time()))
    if lifetime:
        claims["exp"] = claims["iat"] + lifetime
    return jwt.encode(claims, private_key, algorithm=algorithm)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def verify_trigger(token: str | None, run_id: str | None, conf: dict[str, Any], public_key: str, algorithm: str) -> None:
    """The token must be signed by the matching private key, unexpired, over this run_id and conf."""
    if not token:
        raise SignatureError("this appliance accepts only signed triggers: add 'signature', a JWT over run_id and conf")
    try:
        claims = jwt.decode(token, public_key, algorithms=[algorithm], options={"require": ["conf"]})
    except jwt.ExpiredSignatureError:
        raise SignatureError("the signature has expired") from None
    except jwt.InvalidTokenError as err:
        raise SignatureError(f"invalid signature: {err}") from None
    if claims.get("run_id") != run_id:
        raise SignatureError("the signature was made for another run_id")
    if _canonical(claims.get("conf")) != _canonical(conf):
        raise SignatureError("the signature was made for another conf")
