"""Standard Webhooks signatures: the keys, the signature of a message, and its check.

The scheme (standardwebhooks.com) signs a message's id and timestamp with its body::

    webhook-id: <the message id>
    webhook-timestamp: <Unix seconds>
    webhook-signature: v1,<base64 of HMAC-SHA256(key, "<id>.<timestamp>.<body>")>

A key is written ``whsec_<base64 of its bytes>``. Several keys may be in use at once, so
that one can be rotated without a moment when the sender's signature is refused: the
receiver accepts a message signed with any of them, and a sender may put several
signatures, space-separated, in one header.

Rejected: the ``standardwebhooks`` package (1.3.0). Its ``verify`` fixes the timestamp
tolerance at 5 minutes, where ours is a flag; it decodes a secret without validating it,
so a mistyped secret silently becomes another key; and it returns ``Any``. The scheme is
the dozen lines below, with ``hmac.compare_digest`` for every comparison.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping

from orchestrator.errors import InvalidInput

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
# The scheme recommends keys of 24 to 64 random bytes (openssl rand -base64 32).
MIN_KEY_BYTES = 24
MAX_ID_LENGTH = 200
_SECONDS = re.compile(r"[0-9]{1,12}")


def parse_keys(secrets: str) -> tuple[bytes, ...]:
    """The keys of one or more ``whsec_`` secrets, separated by spaces or commas.

    Raises ``InvalidInput`` naming the secret by its position, never by its value.
    """
    items = secrets.replace(",", " ").split()
    if not items:
        raise InvalidInput("webhook_secret", "webhook_secret must name at least one secret")
    keys = []
    for n, item in enumerate(items, 1):
        where = f"webhook secret {n} of {len(items)}"
        if not item.startswith(SECRET_PREFIX):
            raise InvalidInput(
                "webhook_secret",
                f"{where} must be {SECRET_PREFIX}<base64>, e.g. "
                f"{SECRET_PREFIX}$(openssl rand -base64 32)",
            )
        try:
            key = base64.b64decode(item[len(SECRET_PREFIX) :], validate=True)
        except binascii.Error as exc:
            raise InvalidInput("webhook_secret", f"{where} is not valid base64") from exc
        if len(key) < MIN_KEY_BYTES:
            raise InvalidInput(
                "webhook_secret", f"{where} must hold at least {MIN_KEY_BYTES} bytes of key"
            )
        keys.append(key)
    return tuple(keys)


def sign(key: bytes, message_id: str, timestamp: str, body: bytes) -> str:
    """One ``v1,<base64>`` signature of the message (its id as UTF-8)."""
    return _signature(key, message_id.encode() + b"." + timestamp.encode() + b"." + body)


def _signature(key: bytes, signed: bytes) -> str:
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def refusal(
    keys: tuple[bytes, ...], headers: Mapping[str, str], body: bytes, now: float, window: float
) -> str | None:
    """Why the headers do not sign ``body`` with one of ``keys`` within ``window`` seconds
    of ``now``, or None when they do."""
    message_id = headers.get(ID_HEADER)
    timestamp = headers.get(TIMESTAMP_HEADER)
    signatures = headers.get(SIGNATURE_HEADER)
    if not (message_id and timestamp and signatures):
        return f"the {ID_HEADER}, {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} headers are required"
    if len(message_id) > MAX_ID_LENGTH:
        return f"{ID_HEADER} is longer than {MAX_ID_LENGTH} characters"
    if not _SECONDS.fullmatch(timestamp):
        return f"{TIMESTAMP_HEADER} must be Unix seconds"
    if abs(now - int(timestamp)) > window:
        return f"{TIMESTAMP_HEADER} is outside the {window:g} s replay window"
    # Headers arrive decoded as Latin-1: encoding them back gives the bytes that were sent
    # (and signed), and compare_digest refuses a str with non-ASCII characters.
    signed = message_id.encode("latin-1") + b"." + timestamp.encode() + b"." + body
    presented = [s.encode("latin-1") for s in signatures.split(" ") if s]
    for key in keys:
        expected = _signature(key, signed).encode()
        if any(hmac.compare_digest(expected, candidate) for candidate in presented):
            return None
    return f"no signature in {SIGNATURE_HEADER} matches the id, timestamp and body"
