"""schemathesis hooks of ``make contract`` (docs/guide/openapi.md, "The contract run").

Two things a JSON Schema cannot say, so generated "valid" data is brought back to what the
schema means:

- JSON Schema counts ``12.0`` as an integer; the API refuses it (docs/api/README.md,
  "Strict input": an integer must be a JSON integer). Integral floats become integers.
- ``customerId`` (a host field of the example project) names a customer that must exist
  for the tenant; a made-up id is refused. A generated id becomes ``null`` (no customer).
"""

from __future__ import annotations

from typing import Any

import schemathesis


def _integers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integers(item) for item in value]
    return value


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    body = _integers(body)
    if isinstance(body, dict) and isinstance(body.get("customerId"), int):
        body = {**body, "customerId": None}
    return body
