"""``OrdersJSONParser``: the package's JSON parser, strict where DRF's stock one is lenient.

DRF's :class:`~rest_framework.parsers.JSONParser` lets some bodies through that later
become 500s: a deeply nested body raises ``RecursionError`` inside ``json.loads``, and a
lone surrogate (``"\\ud800"``) or a NUL character (``"\\u0000"``) is accepted and then
rejected by PostgreSQL (``jsonb`` and ``text`` can hold neither). This parser answers every
such body with a 4xx problem instead (docs/api/README.md):

- a body larger than ``MAX_BODY_BYTES`` → 413 ``payload_too_large``, judged from
  ``Content-Length`` before anything is read, and by reading at most one byte past the
  cap (a lying or missing ``Content-Length`` cannot make it buffer more);
- a ``Content-Type`` that is a range (``*/*``, ``application/*``) rather than
  ``application/json`` → 415 ``unsupported_media_type``;
- a ``charset`` other than UTF-8 → 415 ``unsupported_media_type`` (RFC 8259 §8.1: JSON
  exchanged between systems is UTF-8);
- anything that is not strict JSON → 400 ``invalid_json``: invalid UTF-8, ``NaN`` /
  ``Infinity`` or a number too large for a float, duplicate object keys, nesting deeper
  than :attr:`OrdersJSONParser.max_depth`, integers longer than
  :attr:`OrdersJSONParser.max_int_digits`, lone surrogates and NUL characters.

An empty body parses as ``{}``, so "no body" and ``{}`` are the same request. One leading
UTF-8 byte order mark is ignored (RFC 8259 §8.1 allows that).

Usage on a host's own view::

    from django_orders.parsers import OrdersJSONParser

    class MyView(APIView):
        parser_classes = [OrdersJSONParser]
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import IO, Any

from django.utils.http import parse_header_parameters
from rest_framework.parsers import BaseParser
from rest_framework.renderers import JSONRenderer

from django_orders.conf import orders_settings
from django_orders.problems import Problem

__all__ = ["OrdersJSONParser"]

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF8_NAMES = frozenset({"utf-8", "utf8"})
# Characters no PostgreSQL text or jsonb value can hold: NUL, and UTF-16 surrogates that
# ``json.loads`` produces from unpaired ``\\ud800``-style escapes (a paired escape becomes
# one astral character and is fine).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_READ_CHUNK = 65536


class _InvalidJSON(Exception):
    """Raised from inside the ``json.loads`` hooks; becomes a 400 ``invalid_json``."""


def invalid_json(detail: str) -> Problem:
    """The 400 ``invalid_json`` problem with ``detail``."""
    return Problem(400, "invalid_json", detail)


class OrdersJSONParser(BaseParser):
    """Parse an ``application/json`` body strictly, with a size cap and a depth limit.

    Only ``application/json`` is accepted (with no ``charset`` or a UTF-8 one): other
    types, ``application/*+json`` included, are answered 415 by DRF's content negotiation,
    because ``+json`` types such as ``application/merge-patch+json`` carry semantics the
    package's views do not implement.

    Subclass and override the class attributes to change the limits; the body size cap is
    the ``MAX_BODY_BYTES`` setting.
    """

    media_type = "application/json"
    renderer_class = JSONRenderer

    #: Deepest nesting of arrays and objects accepted; ``{}`` is depth 1,
    #: ``{"metadata": {}}`` depth 2.
    max_depth: int = 32
    #: Longest integer literal accepted, in digits. Converting a very long digit string
    #: costs quadratic time; CPython's own guard (``sys.set_int_max_str_digits``) is a
    #: process-wide setting a host may turn off, so the parser keeps its own.
    max_int_digits: int = 1000
    #: Reject NUL characters and lone surrogates anywhere in the document.
    reject_unstorable_strings: bool = True

    def parse(
        self,
        stream: IO[bytes] | None,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        """Return the parsed document, or raise a :class:`~django_orders.problems.Problem`."""
        self.check_media_type(media_type)
        self.check_charset(media_type)
        limit = int(orders_settings.MAX_BODY_BYTES)
        request = (parser_context or {}).get("request")
        if request is not None:
            self.check_content_length(request.META, limit)
        raw = self.read_body(stream, limit)
        if not raw:
            return {}
        if raw.startswith(_UTF8_BOM):
            raw = raw[len(_UTF8_BOM) :]
        return self.loads(raw)

    # The steps, each overridable.

    def check_media_type(self, media_type: str | None) -> None:
        """415 unless the request names exactly :attr:`media_type` (any parameters aside).

        DRF picks a parser whose type *matches* the request's ``Content-Type``, so a
        request declaring ``*/*`` or ``application/*`` would reach this parser: declaring
        a range says nothing of what the body is (RFC 9110 §8.3), so it is refused too.
        """
        if not media_type:
            return
        declared, _ = parse_header_parameters(media_type)
        if declared.strip().lower() != self.media_type:
            raise Problem(
                415,
                "unsupported_media_type",
                f'Unsupported media type "{declared}" in request: send {self.media_type}.',
            )

    def check_charset(self, media_type: str | None) -> None:
        """415 unless the ``charset`` parameter, if any, names UTF-8."""
        if not media_type:
            return
        _, params = parse_header_parameters(media_type)
        charset = params.get("charset")
        if charset is not None and charset.strip().lower() not in _UTF8_NAMES:
            raise Problem(
                415,
                "unsupported_media_type",
                f'Unsupported charset "{charset}": JSON bodies must be UTF-8.',
            )

    def check_content_length(self, meta: Mapping[str, Any], limit: int) -> None:
        """413 when the declared ``Content-Length`` already exceeds ``limit``."""
        try:
            declared = int(meta.get("CONTENT_LENGTH") or 0)
        except (TypeError, ValueError):
            return  # DRF treats an unparseable length as no body; the read cap still holds
        if declared > limit:
            raise self.too_large(limit)

    def read_body(self, stream: IO[bytes] | None, limit: int) -> bytes:
        """Read at most ``limit + 1`` bytes; 413 when there are more than ``limit``."""
        if stream is None:
            return b""
        chunks: list[bytes] = []
        remaining = limit + 1
        while remaining > 0:
            chunk = stream.read(min(remaining, _READ_CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        if remaining <= 0:
            raise self.too_large(limit)
        return b"".join(chunks)

    def too_large(self, limit: int) -> Problem:
        return Problem(
            413,
            "payload_too_large",
            f"The request body is larger than the limit of {limit} bytes.",
        )

    def loads(self, raw: bytes) -> Any:
        """Decode strict UTF-8 and parse strict JSON, then check depth and strings."""
        try:
            text = raw.decode("utf-8")  # strict: also refuses encoded surrogates
        except UnicodeDecodeError as exc:
            raise invalid_json(f"The request body is not valid UTF-8 (byte {exc.start}).") from None
        try:
            data = json.loads(
                text,
                object_pairs_hook=_object_without_duplicates,
                parse_constant=_reject_constant,
                parse_int=self._parse_int,
                parse_float=_parse_finite_float,
            )
        except _InvalidJSON as exc:
            raise invalid_json(str(exc)) from None
        except RecursionError:
            # The C scanner recurses once per nesting level; the interpreter's limit
            # stops it long before the stack does. Either way the body is too deep.
            raise self.too_deep() from None
        except ValueError as exc:  # JSONDecodeError, and int conversion limits
            raise invalid_json(f"JSON parse error - {exc}") from None
        self.check_document(data)
        return data

    def too_deep(self) -> Problem:
        return invalid_json(f"The JSON document is nested deeper than {self.max_depth} levels.")

    def check_document(self, data: Any) -> None:
        """Walk the parsed document (without recursion): depth, NUL, lone surrogates."""
        stack: list[tuple[Any, int]] = [(data, 0)]
        while stack:
            value, depth = stack.pop()
            if isinstance(value, str):
                self.check_string(value)
            elif isinstance(value, dict):
                if depth >= self.max_depth:
                    raise self.too_deep()
                for key, item in value.items():
                    self.check_string(key)
                    stack.append((item, depth + 1))
            elif isinstance(value, list):
                if depth >= self.max_depth:
                    raise self.too_deep()
                stack.extend((item, depth + 1) for item in value)

    def check_string(self, value: str) -> None:
        """400 for a string PostgreSQL cannot store (NUL, lone surrogate)."""
        if not self.reject_unstorable_strings:
            return
        found = _UNSTORABLE.search(value)
        if found is None:
            return
        if found.group() == "\x00":
            raise invalid_json("The JSON document contains a NUL character (\\u0000).")
        raise invalid_json(
            "The JSON document contains a lone surrogate "
            f"(\\u{ord(found.group()):04x}); it is not a Unicode character."
        )

    def _parse_int(self, literal: str) -> int:
        if len(literal.lstrip("-")) > self.max_int_digits:
            raise _InvalidJSON(
                f"A number in the JSON document has more than {self.max_int_digits} digits."
            )
        return int(literal)


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # RFC 8259 §4: names "SHOULD be unique"; with duplicates, parsers disagree on which
    # value wins, so a body meaning different things to a proxy and to us is refused.
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _InvalidJSON(f"Duplicate key {key!r} in a JSON object.")
            seen.add(key)
    return result


def _reject_constant(name: str) -> Any:
    # NaN, Infinity and -Infinity are JavaScript, not JSON (RFC 8259 §6).
    raise _InvalidJSON(f"{name} is not a valid JSON value.")


def _parse_finite_float(literal: str) -> float:
    value = float(literal)
    if value in (float("inf"), float("-inf")):
        # "1e400" is valid JSON grammar but no float can hold it; refusing it keeps
        # Infinity (which the JSON renderer cannot write back) out of the data.
        raise _InvalidJSON(f"The number {literal[:40]} is too large.")
    return value
