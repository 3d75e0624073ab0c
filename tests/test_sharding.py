"""Sharded training (ensemble members or batch rows over devices) equals unsharded training, resumed or not.

Runs in a subprocess: the simulated CPU devices must be configured before jax starts.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, os, sys, tempfile
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, numpy as np
    from hmljax.training import TrainConfig, train_and_evaluate
    assert len(jax.devices()) == 4
    def run(**kw):
        cfg = TrainConfig(dataset="synthetic", epochs=2, hidden=32, batch_size=32, lr=3e-3, **kw)
        out = train_and_evaluate(cfg, tempfile.mkdtemp(), progress=False)
        return out["params"], out["results"]["test"]["auprc"]
    res = {}
    for name, extra in (("members", dict(ensemble=4, focal="gmu", weights="code")), ("data", {})):
        p0, a0 = run(**extra)
        p1, a1 = run(shard=name, **extra)
        diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                   for a, b in zip(jax.tree.leaves(p0), jax.tree.leaves(p1)))
        shards = len(jax.tree.leaves(p1)[0].sharding.device_set)
        res[name] = {"max_param_diff": diff, "auprc": [a0, a1], "devices": shards}
    # A sharded run resumed from its checkpoint (restored into each array's sharding from shapes alone)
    # ends where the uninterrupted run does, on the same devices.
    cfg = TrainConfig(dataset="synthetic", epochs=3, hidden=32, batch_size=32, lr=3e-3, shard="members",
                      ensemble=4, checkpoint_every=1)
    whole = train_and_evaluate(cfg, tempfile.mkdtemp(), progress=False)["params"]
    cut = tempfile.mkdtemp()
    train_and_evaluate(cfg.replace(epochs=2), cut, progress=False)
    resumed = train_and_evaluate(cfg, cut, resume=True, extend=True, progress=False)["params"]
    pairs = zip(jax.tree.leaves(whole), jax.tree.leaves(resumed))
    res["resumed"] = {"equal": all(bool(np.array_equal(a, b)) for a, b in pairs),
                      "devices": len(jax.tree.leaves(resumed)[0].sharding.device_set)}
    print("RESULT " + json.dumps(res))
""")


@pytest.mark.slow  # ~45 s of simulated devices; the layouts' unit tests below stay in the default run
def test_sharded_training_matches_unsharded():
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    assert line, out.stderr[-3000:]
    res = json.loads(line[0][7:])
    for name in ("members", "data"):
        assert res[name]["max_param_diff"] < 1e-5, res
        assert abs(res[name]["auprc"][0] - res[name]["auprc"][1]) < 1e-4, res
    assert res["members"]["devices"] == 4  # the member axis really is split over 4 devices
    assert res["data"]["devices"] == 4  # replicated over the 4 data-parallel devices
    assert res["resumed"] == {"equal": True, "devices": 4}, res


def test_uneven_splits_are_refused():
    import jax.numpy as jnp
    import numpy as np
    import pytest

    from hmljax.training import make_mesh, shard_epoch_batches, shard_members

    mesh = make_mesh(1, axis="members")
    shard_members({"w": jnp.zeros((3, 2))}, mesh, 3)  # one device: any E
    with pytest.raises(ValueError, match="devices"):
        make_mesh(10_000, axis="data")
    dm = make_mesh(1, axis="data")
    i, w = shard_epoch_batches(np.zeros((2, 4), np.int32), np.ones((2, 4), bool), dm)
    assert i.shape == (2, 4) and w.shape == (2, 4)
