"""Peak host memory of training with a checkpoint every epoch, and of resuming one, against PyTorch.

    python -m benchmarks.bench_checkpoint_memory --threads 1

Both sides train the same network (C-HMCNN's in -> H -> H -> out MLP on the embedded synthetic dataset,
Adam, batch 64) and write a checkpoint after every epoch; then a second process resumes the run from
its last checkpoint and trains one epoch more. hmljax: ``train_and_evaluate`` with ``checkpoint_every=1``
(orbax, the parameters, Adam's moments, the key and the epoch; ``resume=True, extend=True``). PyTorch, as
a competent user writes it: ``torch.save({"model": state_dict, "optim": state_dict})`` to a temporary file
then ``os.replace``; resuming, ``torch.load`` and ``load_state_dict`` into a freshly built model and
optimiser.

Each phase runs in its own process; its peak resident set (``ru_maxrss``) less that of the same phase
at H = 16 (the interpreter, the framework and the data) is divided by the state's size, 12 bytes a
parameter (the parameters and Adam's two moments). 1.33 is the floor of a step (the state plus one
gradient); what the checkpoint code adds shows above it. Memory, not time: the load guard is off.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common as C  # noqa: E402

FEATURES, CLASSES, ROWS = 48, 493, 1200  # the synthetic dataset's train split


def _extra(p):
    p.add_argument("--hidden", type=C.count, default=8000, help="H: 8000 gives 68.5M parameters (0.82 GB of state)")
    p.add_argument("--epochs", type=C.count, default=8, help="epochs, each ending in a checkpoint")
    p.add_argument("--sides", nargs="+", choices=("hmljax", "torch"), default=["hmljax", "torch"])
    p.add_argument("--child", nargs=4, metavar=("SIDE", "PHASE", "HIDDEN", "DIR"), help=argparse.SUPPRESS)


def _peak_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _hmljax(phase: str, hidden: int, run_dir: str, epochs: int) -> int:
    import jax
    import numpy as np

    from hmljax.training import TrainConfig, train_and_evaluate

    cfg = TrainConfig(dataset="synthetic", epochs=epochs, hidden=hidden, batch_size=64, checkpoint_every=1)
    if phase == "train":
        out = train_and_evaluate(cfg, run_dir, progress=False)
    else:
        out = train_and_evaluate(cfg.replace(epochs=epochs + 1), run_dir, resume=True, extend=True, progress=False)
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(out["params"]))


def _torch(phase: str, hidden: int, run_dir: str, epochs: int) -> int:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(FEATURES, hidden), nn.ReLU(), nn.Dropout(0.7), nn.Linear(hidden, hidden),
                          nn.ReLU(), nn.Dropout(0.7), nn.Linear(hidden, CLASSES))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-5)
    x, y = torch.randn(ROWS, FEATURES), (torch.rand(ROWS, CLASSES) < 0.1).float()
    path = os.path.join(run_dir, "checkpoint.pt")
    start = 0
    if phase == "resume":
        ckpt = torch.load(path)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optim"])
        start = ckpt["epoch"]
        del ckpt
    for epoch in range(start, epochs if phase == "train" else start + 1):
        for i in torch.randperm(ROWS).split(64):
            opt.zero_grad(set_to_none=True)
            nn.functional.binary_cross_entropy_with_logits(model(x[i]), y[i]).backward()
            opt.step()
        torch.save({"model": model.state_dict(), "optim": opt.state_dict(), "epoch": epoch + 1}, path + ".tmp")
        os.replace(path + ".tmp", path)
    return sum(p.numel() for p in model.parameters())


def _child(side: str, phase: str, hidden: int, run_dir: str, epochs: int) -> None:
    params = (_hmljax if side == "hmljax" else _torch)(phase, hidden, run_dir, epochs)
    print("RESULT " + json.dumps({"params": params, "peak_bytes": _peak_bytes()}))


def _run_child(args, side: str, phase: str, hidden: int, run_dir: str) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_checkpoint_memory", "--threads", str(args.threads),
           "--epochs", str(args.epochs), "--child", side, phase, str(hidden), run_dir]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode or not line:
        raise SystemExit(f"{side} {phase} (H = {hidden}) failed:\n{out.stderr[-3000:]}")
    return json.loads(line[0][7:])


def main():
    args = C.parse_args(__doc__, _extra, timed=False)
    if args.child:
        side, phase, hidden, run_dir = args.child
        _child(side, phase, int(hidden), run_dir, args.epochs)
        return
    rows = []
    for side in args.sides:
        peaks = {}
        for hidden in (16, args.hidden):
            with tempfile.TemporaryDirectory() as d:
                peaks[hidden] = {phase: _run_child(args, side, phase, hidden, d) for phase in ("train", "resume")}
        params = peaks[args.hidden]["train"]["params"]
        state = 12 * params
        for phase in ("train", "resume"):
            above = peaks[args.hidden][phase]["peak_bytes"] - peaks[16][phase]["peak_bytes"]
            rows.append({"side": side, "phase": phase, "hidden": args.hidden, "params": params,
                         "epochs_checkpointed": args.epochs if phase == "train" else 1,
                         "state_gb": round(state / 1e9, 3), "peak_above_base_gb": round(above / 1e9, 3),
                         "peak_over_state": round(above / state, 2)})
    for phase in ("train", "resume") if len(args.sides) == 2 else ():
        h, t = (next(r for r in rows if r["side"] == s and r["phase"] == phase) for s in ("hmljax", "torch"))
        h["torch_over_hmljax"] = round(t["peak_above_base_gb"] / h["peak_above_base_gb"], 2)
    path = C.write_rows("checkpoint_memory", rows, args, measure_rates=False)
    C.print_table(rows, ["side", "phase", "params", "state_gb", "peak_above_base_gb", "peak_over_state",
                         "torch_over_hmljax"])
    print(f"written to {path}")


if __name__ == "__main__":
    main()
