"""A webhook consumer's verifier, written from the Standard Webhooks spec (v1.0.0).

Deliberately independent of ``django_orders.publishers.webhook``: it imports nothing from
the package, so a signing bug cannot hide behind the same bug in the check. What the spec
says, section by section:

- "Signature scheme": the signed content is ``{msg_id}.{timestamp}.{payload}``, HMAC-SHA256
  with the secret, base64-encoded, prefixed with the identifier ``v1`` and a comma.
- "Secret serialization": ``whsec_`` + base64 of the key bytes.
- "Webhook headers": ``webhook-id``, ``webhook-timestamp`` (integer Unix seconds),
  ``webhook-signature`` (a space-delimited list; one valid ``v1`` entry suffices).
- "Verifying signatures": compare in constant time; reject timestamps outside a tolerance.

(The package also accepts a secret that is plain text without the prefix, the key being
its UTF-8 bytes; :class:`Verifier` takes raw key bytes for that case.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

DEFAULT_TOLERANCE = 5 * 60  # seconds, as the reference libraries use


class WebhookVerificationError(Exception):
    """The request is not an authentic, fresh webhook."""


class Verifier:
    """Verify ``(body, headers)`` of a received webhook against a secret."""

    def __init__(self, secret: str | bytes, *, tolerance: int = DEFAULT_TOLERANCE) -> None:
        if isinstance(secret, bytes):
            self.key = secret
        elif secret.startswith("whsec_"):
            self.key = base64.b64decode(secret.removeprefix("whsec_"))
        else:
            raise ValueError("a string secret must be whsec_<base64>; pass raw key bytes else")
        self.tolerance = tolerance

    def verify(self, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> Any:
        """Return the parsed JSON body, or raise :class:`WebhookVerificationError`."""
        lowered = {name.lower(): value for name, value in headers.items()}
        try:
            msg_id = lowered["webhook-id"]
            timestamp_text = lowered["webhook-timestamp"]
            signatures = lowered["webhook-signature"]
        except KeyError as exc:
            raise WebhookVerificationError(f"missing header {exc.args[0]}") from exc
        try:
            timestamp = int(timestamp_text)
        except ValueError as exc:
            raise WebhookVerificationError("webhook-timestamp is not an integer") from exc
        current = time.time() if now is None else now
        if abs(current - timestamp) > self.tolerance:
            raise WebhookVerificationError("webhook-timestamp outside the tolerance")

        expected = self.signature(msg_id, timestamp, body)
        for entry in signatures.split(" "):
            version, _, signature = entry.partition(",")
            if version != "v1":
                continue  # other schemes (v1a: ed25519) are not ours to check
            if hmac.compare_digest(signature.encode(), expected.encode()):
                return json.loads(body)
        raise WebhookVerificationError("no matching v1 signature")

    def signature(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """The base64 HMAC-SHA256 of ``{msg_id}.{timestamp}.{body}`` (without ``v1,``)."""
        content = f"{msg_id}.{timestamp}.".encode() + body
        return base64.b64encode(hmac.new(self.key, content, hashlib.sha256).digest()).decode()
