"""The whole tree passes ``ruff check`` with the rules in pyproject.toml.

ruff is pinned to one minor version in the test extra: each minor release may add checks to the selected
rule families, and a new ruff should be taken on purpose (with its fixes), not by a CI run that fails.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ruff_check_is_clean():
    pytest.importorskip("ruff", reason="ruff is in the test extra: pip install -e '.[test]'")
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", ROOT],
                         capture_output=True, text=True, cwd=ROOT)
    problems = out.stdout + out.stderr
    assert out.returncode == 0, f"ruff check found problems (fix them, or `ruff check --fix`):\n{problems}"
