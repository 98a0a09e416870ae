"""Calls between nodes are signed: HMAC-SHA256 of a timestamp and the body.

A forwarded event may be one only a service may send (a broker event the chart keeps from
clients), so the endpoint that takes them must know the call came from a node. The key is
made by the first node and kept in the database (``cluster_keys``): whoever can read it can
write orders directly anyway. The timestamp bounds a replay to ``WINDOW`` seconds, and a
replayed keyed event is answered from the journal, not applied again.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "orchestrator-cluster-signature"
WINDOW = 60.0


def sign(key: bytes, body: bytes, now: float) -> str:
    stamp = int(now)
    mac = hmac.new(key, b"%d." % stamp + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


def refusal(key: bytes, header: str | None, body: bytes, now: float) -> str | None:
    """Why the signature does not hold, or None when it does."""
    if header is None:
        return f"the {SIGNATURE_HEADER} header is required"
    fields = dict(part.partition("=")[::2] for part in header.split(","))
    stamp, mac = fields.get("t", ""), fields.get("v1", "")
    if not stamp.isdigit() or len(stamp) > 12:
        return "the signature's timestamp is not a number of seconds"
    if abs(now - int(stamp)) > WINDOW:
        return f"the signature is more than {WINDOW:g} s from this node's clock"
    expected = hmac.new(key, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac.encode(), expected.encode()):
        return "the signature does not match"
    return None
