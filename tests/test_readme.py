"""The README's Python snippets run as written.

Sketches (a block with a line that is only ``...``) are not collected at all: the engine section's
"adding a method" sketch is run in full as tests/methods/toy_method.py (tests/test_engine.py).
"""

from __future__ import annotations

import os
import re

import pytest
from conftest import HAVE_DATA

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _blocks():
    text = open(os.path.join(ROOT, "README.md")).read()
    for m in re.finditer(r"```python\n(.*?)```", text, re.S):
        line = text[: m.start()].count("\n") + 1
        if any(ln.strip() == "..." or ln.strip().startswith("... ") for ln in m.group(1).splitlines()):
            continue  # a sketch
        # Snippets on the real datasets build their caches (cellcycle_GO: a while): with -m slow.
        marks = [pytest.mark.slow] if "../shared/data" in m.group(1) else []
        yield pytest.param(m.group(1), id=f"README.md:{line}", marks=marks)


@pytest.mark.parametrize("code", list(_blocks()))
def test_readme_snippet_runs(code, monkeypatch):
    if "../shared/data" in code and not HAVE_DATA:
        pytest.skip("needs the real datasets (HMLJAX_DATA)")
    monkeypatch.chdir(ROOT)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
