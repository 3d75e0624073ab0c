import os
import re

import hmljax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_public_surface():
    for name in hmljax.__all__:
        assert getattr(hmljax, name) is not None, name
    import importlib

    subs = [importlib.import_module(f"hmljax.{name}") for name in
            ("data", "hierarchy", "constraints", "losses", "metrics", "engine", "methods", "training")]
    for sub in subs:
        for name in sub.__all__:
            assert hasattr(sub, name), f"{sub.__name__}.{name}"


def test_nothing_outside_the_package_imports_a_private_module():
    """Tests, experiments and benchmarks use the public API only: no ``hmljax.<pkg>._module`` imports."""
    private = re.compile(r"^\s*(from|import)\s+hmljax(\.\w+)*\._\w+", re.M)
    offenders = []
    for folder in ("tests", "experiments", "benchmarks"):
        for root, _dirs, files in os.walk(os.path.join(ROOT, folder)):
            for f in files:
                if f.endswith(".py"):
                    path = os.path.join(root, f)
                    with open(path, encoding="utf-8") as fh:
                        text = fh.read()
                    rel = os.path.relpath(path, ROOT)
                    offenders += [f"{rel}: {m.group(0).strip()}" for m in private.finditer(text)]
    assert not offenders, offenders


def test_data_and_hierarchy_do_not_import_jax():
    """The numpy data layer must work with jax unavailable (e.g. in data-loading workers)."""
    import subprocess
    import sys

    pkg_dir = os.path.dirname(hmljax.__file__)
    code = (
        "import sys, types; sys.modules['jax'] = None\n"  # any `import jax` now raises ImportError
        f"pkg = types.ModuleType('hmljax'); pkg.__path__ = [{pkg_dir!r}]; sys.modules['hmljax'] = pkg\n"
        "import hmljax.data, hmljax.hierarchy; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


PACKAGES = ["hmljax", "hmljax.data", "hmljax.hierarchy", "hmljax.constraints", "hmljax.losses", "hmljax.metrics",
            "hmljax.models", "hmljax.engine", "hmljax.methods", "hmljax.training", "hmljax.cli"]


def test_each_package_imports_first():
    """Each package imported first (every hmljax module forgotten before it): no import cycle hides behind
    another import's order. One fresh interpreter; jax stays loaded between packages, hmljax does not."""
    import subprocess
    import sys

    code = (
        "import importlib, sys\n"
        f"for m in {PACKAGES!r}:\n"
        "    for k in [k for k in sys.modules if k == 'hmljax' or k.startswith('hmljax.')]:\n"
        "        del sys.modules[k]\n"
        "    importlib.import_module(m)\n"
        "    importlib.import_module('hmljax.engine').list_methods()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
