import hmljax


def test_public_surface():
    for name in hmljax.__all__:
        assert getattr(hmljax, name) is not None, name
    for sub in (hmljax.data, hmljax.hierarchy, hmljax.constraints, hmljax.losses, hmljax.metrics):
        for name in sub.__all__:
            assert hasattr(sub, name), f"{sub.__name__}.{name}"


def test_data_and_hierarchy_do_not_import_jax():
    """The numpy data layer must work with jax unavailable (e.g. in data-loading workers)."""
    import os
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
