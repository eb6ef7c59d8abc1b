"""Conditional requests: ``ETag``, ``If-Match`` and ``If-None-Match`` (RFC 9110 §13).

The entity-tag of a resource is its ``version`` as a strong tag: version 3 is ``"3"``.

- :func:`evaluate_if_match` guards an unsafe request (optimistic locking): 428 when the
  header is missing and required, 400 when it cannot be parsed, 412 when no tag matches.
  It compares in Python, so the comparison and the write that follows must be atomic:
  evaluate it on a row locked until commit (``select_for_update()`` in the request's
  transaction, as the package's views do), or make the write itself conditional
  (``UPDATE … WHERE version = %s``) — otherwise two requests holding the same tag can
  both succeed.
- :func:`if_none_match_matches` tells a ``GET`` handler to answer 304 Not Modified.

Both are plain functions of a header value and a version, usable from any view::

    from django_orders.conditional import etag, evaluate_if_match

    evaluate_if_match(request.headers.get("If-Match"), obj.version)
    ...
    response["ETag"] = etag(obj.version)
"""

from __future__ import annotations

import re
from typing import NamedTuple

from django_orders.problems import Problem

__all__ = [
    "EntityTag",
    "etag",
    "evaluate_if_match",
    "if_match_version",
    "if_none_match_matches",
    "parse_entity_tags",
]

# RFC 9110 §8.8.3:
#   entity-tag = [ weak ] opaque-tag        weak = %s"W/"
#   opaque-tag = DQUOTE *etagc DQUOTE       etagc = %x21 / %x23-7E / obs-text
# obs-text (%x80-FF) arrives from WSGI as the Latin-1 characters U+0080-U+00FF. Besides the
# RFC form we accept bare digits (``3``), which older clients of this API send; they stand
# for the strong tag ``"3"``. Note that a comma is a valid etagc: lists cannot be split on
# commas, they are scanned element by element.
_ELEMENT = re.compile(r'(?P<weak>W/)?"(?P<opaque>[\x21\x23-\x7e\x80-\xff]*)"|(?P<bare>[0-9]+)')
_OWS = " \t"  # RFC 9110 §5.6.3: OWS = *( SP / HTAB )
#: The largest version an order can have (``version`` is an SQL ``integer``).
MAX_VERSION = 2**31 - 1


class EntityTag(NamedTuple):
    """One parsed entity-tag: its opaque value (without quotes) and whether it is weak."""

    opaque: str
    weak: bool = False


def etag(version: int) -> str:
    """The strong entity-tag of ``version``, quoted as RFC 9110 writes it: ``'"3"'``."""
    return f'"{version}"'


def _skip_ows(value: str, pos: int) -> int:
    while pos < len(value) and value[pos] in _OWS:
        pos += 1
    return pos


def parse_entity_tags(value: str) -> list[EntityTag] | None:
    """Parse a ``#entity-tag`` list (RFC 9110 §5.6.1); ``None`` if it is malformed.

    ``*`` is not an entity-tag and is left to the callers. Empty list elements are
    skipped, as §5.6.1.2 requires of recipients. A list with no element at all (an empty
    header) parses as ``[]``.
    """
    tags: list[EntityTag] = []
    pos, end = 0, len(value)
    while True:
        pos = _skip_ows(value, pos)
        if pos == end:
            return tags
        if value[pos] == ",":  # an empty element
            pos += 1
            continue
        element = _ELEMENT.match(value, pos)
        if element is None:
            return None
        if element["bare"] is not None:
            tags.append(EntityTag(element["bare"]))
        else:
            tags.append(EntityTag(element["opaque"], weak=element["weak"] is not None))
        pos = _skip_ows(value, element.end())
        if pos == end:
            return tags
        if value[pos] != ",":
            return None
        pos += 1


def evaluate_if_match(
    header_value: str | None, current_version: int, *, required: bool = True
) -> None:
    """Evaluate ``If-Match`` against the resource's current version; raise if it fails.

    - missing: 428 ``precondition_required`` when ``required`` (RFC 6585 §3), else pass;
    - ``*``: passes, the resource exists (RFC 9110 §13.1.1);
    - not a valid list of entity-tags (or bare digits): 400 ``invalid_if_match``;
    - no tag matches by *strong* comparison (RFC 9110 §8.8.3.2; weak tags never match):
      412 ``version_mismatch`` with ``currentVersion`` and the current ``ETag``.
    """
    if header_value is None:
        if required:
            raise precondition_required()
        return
    if header_value.strip(_OWS) == "*":
        return
    tags = parse_entity_tags(header_value)
    if not tags:
        raise invalid_if_match()
    current = str(current_version)
    if any(not tag.weak and tag.opaque == current for tag in tags):
        return
    if any(tag.weak and tag.opaque == current for tag in tags):
        # The client holds the current version but sent it as a weak tag: saying "the
        # resource has changed" would send it looking for a change that never happened.
        raise version_mismatch(
            current_version,
            f'If-Match uses strong comparison, so the weak tag W/"{current}" never matches '
            f'(RFC 9110 §13.1.1): send "{current}".',
        )
    raise version_mismatch(current_version)


def precondition_required() -> Problem:
    """428 ``precondition_required``: ``If-Match`` is required and missing (RFC 6585 §3)."""
    return Problem(
        428,
        "precondition_required",
        'This request requires an If-Match header with the current ETag, e.g. "1".',
    )


def invalid_if_match() -> Problem:
    """400 ``invalid_if_match``: the header is not a list of entity-tags."""
    return Problem(
        400, "invalid_if_match", 'The If-Match header is not a list of entity-tags such as "3".'
    )


def version_mismatch(current_version: int, detail: str | None = None) -> Problem:
    """412 ``version_mismatch`` with ``currentVersion`` and the current ``ETag``; ``detail``
    says why, by default that the resource has changed."""
    return Problem(
        412,
        "version_mismatch",
        detail or f"The resource has changed: its current version is {current_version}.",
        headers={"ETag": etag(current_version)},
        currentVersion=current_version,
    )


def if_match_version(header_value: str | None) -> int | None:
    """The version ``If-Match`` names when it is one strong entity-tag of a version
    (``"3"``, or the bare ``3``): the one version :func:`evaluate_if_match` lets through,
    for a write made conditional on it (``UPDATE … SET version = <it + 1> WHERE version =
    <it>``), so one below :data:`MAX_VERSION`. ``None`` for anything else — missing,
    ``*``, weak, several tags, malformed, not a version's text (``"03"`` matches no
    version) —, which :func:`evaluate_if_match` then answers."""
    if header_value is None:
        return None
    tags = parse_entity_tags(header_value)
    if tags is None or len(tags) != 1 or tags[0].weak:
        return None
    opaque = tags[0].opaque
    # ASCII digits without a leading zero, in the range of a version (an SQL integer).
    if not (opaque.isascii() and opaque.isdigit()) or opaque[0] == "0" or len(opaque) > 10:
        return None
    version = int(opaque)
    # The largest version has no next one to write: the statement would fail on any
    # order (found in review); the locked path answers (412, or its own error).
    return version if version < MAX_VERSION else None


def if_none_match_matches(header_value: str | None, current_version: int) -> bool:
    """Whether ``If-None-Match`` matches the current version (then answer 304 to a GET).

    Uses weak comparison (RFC 9110 §13.1.2): ``"3"``, ``W/"3"``, a list containing either,
    or ``*``. A missing or malformed header never matches: the server may ignore it and
    answer normally.
    """
    if header_value is None:
        return False
    if header_value.strip(_OWS) == "*":
        return True
    current = str(current_version)
    return any(tag.opaque == current for tag in parse_entity_tags(header_value) or ())


def if_none_match_is_newer(header_value: str | None, version: int) -> bool:
    """Whether ``If-None-Match`` names a version newer than ``version``.

    A client only holds ETags the server gave it, so such a tag means ``version`` was read
    from a copy that is behind (a replica still replaying; docs/guide/replicas.md). Tags
    that are not a version number, ``*`` and malformed headers say nothing: ``False``.
    """
    if header_value is None:
        return False
    return any(
        # ASCII digits only ("²" is a digit to str.isdigit()); 18 fit in a bigint.
        tag.opaque.isascii()
        and tag.opaque.isdigit()
        and len(tag.opaque) <= 18
        and int(tag.opaque) > version
        for tag in parse_entity_tags(header_value) or ()
    )
