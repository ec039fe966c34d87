"""Verifying a delivery on the receiving side (Standard Webhooks): the HMAC-SHA256 of
`{webhook-id}.{webhook-timestamp}.{body}` under the endpoint's secret, any of the
signatures sent (during a secret rotation there are two), and a timestamp within the
tolerance so a captured delivery cannot be replayed later."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any, Mapping, Optional

from ._errors import WebhookVerificationError

TOLERANCE_SECONDS = 5 * 60


def _header(headers: Mapping[str, str], name: str) -> str:
    for k, v in headers.items():
        if k.lower() == name:
            return v
    raise WebhookVerificationError(f"missing {name} header")


def verify_webhook(body: bytes, headers: Mapping[str, str], secret: str, *,
                   tolerance: int = TOLERANCE_SECONDS, now: Optional[float] = None) -> Any:
    """The delivery's JSON (`{"type", "timestamp", "data"}`) once its signature checks out;
    raises `WebhookVerificationError` otherwise."""
    msg_id = _header(headers, "webhook-id")
    timestamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a number") from None
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance (a replay?)")
    key_text = secret[len("whsec_"):] if secret.startswith("whsec_") else secret
    try:
        key = base64.b64decode(key_text)
    except ValueError:
        raise WebhookVerificationError("the secret is not a whsec_… secret") from None
    if isinstance(body, str):
        body = body.encode()
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return json.loads(body)
    raise WebhookVerificationError("no signature matches")
