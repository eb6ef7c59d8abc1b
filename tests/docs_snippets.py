"""Run the code blocks of the docs, so that a recipe in a guide is code that works.

A block is marked by an HTML comment (invisible once rendered) on the line before its
fence::

    <!-- snippet: resolver-user -->
    ```python
    # myproject/tenancy.py
    ...
    ```

A test installs a block as the module its first comment names (``myproject.tenancy``), so
the dotted paths of the docs' settings import it, or reads a settings block as a dict for
``override_settings``.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"

_BLOCK = re.compile(r"<!-- snippet: (?P<name>[\w-]+) -->\n```python\n(?P<code>.*?)\n```", re.S)


def snippet(page: str, name: str) -> str:
    """The code of the block ``name`` of ``docs/<page>``."""
    blocks = {match["name"]: match["code"] for match in _BLOCK.finditer((DOCS / page).read_text())}
    if name not in blocks:
        raise LookupError(f"docs/{page} has no snippet {name!r} (it has {sorted(blocks)})")
    return blocks[name]


def run(page: str, name: str, namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    """Execute the block in ``namespace`` (a new one by default) and return it."""
    namespace = {} if namespace is None else namespace
    exec(compile(snippet(page, name), f"docs/{page}#{name}", "exec"), namespace)
    return namespace


def settings_from(page: str, name: str) -> dict[str, Any]:
    """The settings a ``# settings.py`` block defines (its upper-case names)."""
    return {key: value for key, value in run(page, name).items() if key.isupper()}


def install(monkeypatch: pytest.MonkeyPatch, module: str, page: str, *names: str) -> Any:
    """Make the blocks ``names`` importable as ``module`` for the test's duration."""
    parent, _, child = module.rpartition(".")
    if parent and parent not in sys.modules:
        package = types.ModuleType(parent)
        package.__path__ = []
        monkeypatch.setitem(sys.modules, parent, package)
    created = types.ModuleType(module)
    monkeypatch.setitem(sys.modules, module, created)
    if parent:
        monkeypatch.setattr(sys.modules[parent], child, created, raising=False)
    for name in names:
        run(page, name, created.__dict__)
    return created
