"""A griffe extension for the API reference: the package's docstrings are reST, the site is
Markdown. Before mkdocstrings renders a docstring, Sphinx cross-reference roles become code
spans and ``::`` literal-block markers become plain colons, so neither shows raw.

- ``:class:`Relay``` → ```Relay```; ``:meth:`~Publisher.close``` → ```close()```;
  ``:func:`etag``` → ```etag()```; ``:mod:`a.b``` → ```a.b```; ``:role:`text <target>```
  → ```text```.
- ``Usage::`` → ``Usage:`` (the indented block after it is a Markdown code block already);
  a ``::`` alone on its line is dropped.
- An attribute documented by ``#:`` comments above it (Sphinx's convention, which griffe
  does not read) gets them as its docstring.

Loaded by mkdocs.yml (``extensions: [docs/_ext/griffe_roles.py:SphinxRoles]``); nothing in
the package imports it.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?P<role>[a-z]+):`(?P<body>[^`]+)`")
_EXPLICIT_TITLE = re.compile(r"^(?P<title>.+?)\s*<[^<>]+>$")
_CALLABLE_ROLES = frozenset({"func", "meth"})
_LITERAL_MARKER = re.compile(r"(?m)(?<=\S)::$|^[ \t]*::\n")


def _role_as_code(match: re.Match[str]) -> str:
    role, body = match["role"], match["body"].strip()
    titled = _EXPLICIT_TITLE.match(body)
    if titled:
        return f"`{titled['title']}`"
    body = body.lstrip("!")
    if body.startswith("~"):
        body = body[1:].rpartition(".")[2]
    if role in _CALLABLE_ROLES and not body.endswith(")"):
        body += "()"
    return f"`{body}`"


def _literal_marker(match: re.Match[str]) -> str:
    return ":" if match.group().endswith("::") else ""


def to_markdown(text: str) -> str:
    """The docstring ``text`` with its reST roles and literal-block markers rewritten."""
    return _LITERAL_MARKER.sub(_literal_marker, _ROLE.sub(_role_as_code, text))


def _comment_docstring(obj: griffe.Object) -> str | None:
    """The ``#:`` comment lines right above the attribute ``obj``, without their marker."""
    if obj.lineno is None:
        return None
    lines = obj.module.lines
    index = obj.lineno - 2  # the line above the attribute, 0-based
    comment: list[str] = []
    while index >= 0 and lines[index].lstrip().startswith("#:"):
        comment.insert(0, lines[index].lstrip()[2:].strip())
        index -= 1
    return "\n".join(comment) or None


class SphinxRoles(griffe.Extension):
    """Rewrite every loaded object's docstring with :func:`to_markdown`."""

    def on_instance(self, *, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        if obj.docstring is None and obj.is_attribute:
            text = _comment_docstring(obj)
            if text is not None:
                obj.docstring = griffe.Docstring(
                    text,
                    lineno=obj.lineno,
                    parent=obj,
                    parser=getattr(agent, "docstring_parser", None),
                    parser_options=getattr(agent, "docstring_options", None),
                )
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
