"""C-HMCNN's train step in PyTorch at three levels, and the check that each one computes what hmljax computes.

Issue 19: a benchmark against PyTorch is only fair if the PyTorch side is what a
PyTorch expert would write. Every level trains the same network (in -> H -> H ->
out, ReLU and dropout after the first two layers) with the same MCLoss and Adam
with coupled weight decay (``torch.optim.Adam(weight_decay=wd)``; hmljax's
``adam_coupled`` adds ``wd * theta`` to the gradient the same way):

- ``as published``: the released C-HMCNN loop (main.py) as written. Data kept
  as float64 tensors and cast with ``x.float()`` per step, the network ends in a
  sigmoid, the dense ``[B, N, N]`` max-constraint ``get_constr_out`` runs in
  float64 twice per step (negatives and positives), ``nn.BCELoss`` on the
  columns of the ``to_eval`` mask, the default ``torch.optim.Adam`` (single-tensor on
  CPU). The loop's per-step accuracy bookkeeping is left out (it would only
  slow this level down).
- ``same algorithm``: hmljax's algorithm in PyTorch. The sparse constraint in
  logit space (``MCM(sigmoid(z)) = sigmoid(MCM(z))``): the max over descendants
  propagated child -> parent along the hierarchy's edges with
  ``scatter_reduce(..., reduce="amax")``, one level of heights at a time, the
  negatives' and positives' passes batched into one; BCE from logits; index
  tensors built once; ``Adam(fused=True)`` (``foreach`` where fused is missing).
- ``best effort``: the same-algorithm step, forward, loss, backward *and*
  optimiser, as one ``torch.compile(fullgraph=True)`` function: the gradient from
  ``torch.func.grad_and_value`` and the update from ``torch.optim.adam.adam``
  (``foreach``, ``capturable``; the function ``Adam.step`` calls; ``Adam.step`` itself graph-breaks on
  purpose around its ``no_grad`` switch, see torch/optim/optimizer.py), so
  dynamo captures one graph and inductor compiles it whole. ``fullgraph=True``
  makes any graph break an error; the compile time is reported on its own.

Ensembles (``members=E``, RARE's setting: E independent full networks trained by
one optimiser on the same batches, the members' losses summed): as published is
the released ``MultiHeadedModel``, a Python loop over E as-published networks
and one default Adam; same algorithm keeps the E networks as stacked
``[E, in, out]`` weights (one ``baddbmm`` per layer, one dropout mask per
member) with the members' rows flattened into one sparse-constraint pass and
a fused Adam over the stacked tensors; best effort compiles that step whole.

:func:`check_level` runs K steps of a level and of hmljax from the same
parameters on the same batches with dropout off and compares the loss at every
step and every parameter at the end.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.optim.adam import adam as adam_functional

from benchmarks import _common as C
from benchmarks._engine_levels import flat_params
from benchmarks._torch_ref import load_flax_params, mlp

LEVELS = ("as published", "same algorithm", "best effort")
BETAS, EPS = (0.9, 0.999), 1e-8  # torch's and optax's Adam defaults (hmljax's adam_coupled uses optax's)


@dataclasses.dataclass(frozen=True)
class Problem:
    """One dataset's train-step setting, shared by the three levels and by hmljax."""

    hierarchy: object  # hmljax.hierarchy.Hierarchy
    num_features: int
    hidden: int
    lr: float = 1e-4
    weight_decay: float = 1e-5
    # check_level's ``noise_norm_tol`` (Adam-amplified float32 noise); 0 (off) for every problem whose
    # levels match without it.
    noise_norm_tol: float = 0.0

    @property
    def num_nodes(self) -> int:
        return self.hierarchy.num_nodes

    @property
    def ancestry_CxC(self) -> np.ndarray:
        """bool; ``[i, j]`` iff j is i or a descendant of i (C-HMCNN's R)."""
        return np.asarray(self.hierarchy.ancestry, bool)

    @property
    def evaluated_C(self) -> np.ndarray:
        """bool; False at the roots, which the loss skips."""
        return np.asarray(self.hierarchy.evaluated, bool)


@dataclasses.dataclass
class TorchStep:
    """One level's train step: ``step(*prepare(x, y))`` does one optimiser step in place and returns the loss.

    ``prepare`` turns a numpy batch into the level's input tensors, outside any
    timed region. ``compile_s``, ``graph_breaks``, ``graphs`` and ``error`` are
    set by the compiled level; ``error`` means the level is unavailable.
    """

    level: str
    model: nn.Module
    prepare: Callable
    step: Callable
    optimizer_impl: str
    compile_s: float | None = None
    graph_breaks: int | None = None
    graphs: int | None = None
    error: str | None = None
    first_loss: torch.Tensor | None = None  # the compiled level's: compiling it took one step

    def params_flax_layout(self) -> dict[str, np.ndarray]:
        """The parameters as hmljax names and lays them out: ``dense_k/kernel`` is ``[in, out]`` (``[E, in, out]``)."""
        if hasattr(self.model, "flax_layout"):
            return self.model.flax_layout()
        return linear_layout(self.model)


def linear_layout(module: nn.Module) -> dict[str, np.ndarray]:
    """A module's Linear layers, in registration order, as ``dense_k/kernel`` ``[in, out]`` and ``dense_k/bias``."""
    out = {}
    for k, lin in enumerate(m for m in module.modules() if isinstance(m, nn.Linear)):
        out[f"dense_{k}/kernel"] = lin.weight.detach().cpu().numpy().T
        out[f"dense_{k}/bias"] = lin.bias.detach().cpu().numpy()
    return out


# ---------------------------------------------------------------- as published


class ConstrainedFFNN(nn.Module):
    """The released ``ConstrainedFFNNModel`` in train mode: Linear-ReLU-Dropout twice, Linear, sigmoid."""

    def __init__(self, num_features: int, hidden: int, num_outputs: int, dropout: float):
        super().__init__()
        self.fc = nn.ModuleList([nn.Linear(num_features, hidden), nn.Linear(hidden, hidden),
                                 nn.Linear(hidden, num_outputs)])
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for lin in self.fc[:-1]:
            x = self.drop(torch.relu(lin(x)))
        return torch.sigmoid(self.fc[-1](x))


def get_constr_out(h_BxN: torch.Tensor, R_1xNxN: torch.Tensor) -> torch.Tensor:
    """The released MCM: ``max_j R[i, j] h[b, j]`` over a float64 ``[B, N, N]`` product."""
    c_out = h_BxN.double().unsqueeze(1).expand(len(h_BxN), R_1xNxN.shape[1], R_1xNxN.shape[1])
    R_batch = R_1xNxN.expand(len(h_BxN), R_1xNxN.shape[1], R_1xNxN.shape[1])
    return torch.max(R_batch * c_out.double(), dim=2).values


def member_params(params, e: int) -> dict:
    """Member ``e`` of a stacked (``[E, ...]`` leaves) parameter tree."""
    return {layer: {k: np.asarray(v)[e] for k, v in d.items()} for layer, d in params.items()}


def as_published(problem: Problem, params, *, dropout: float, members: int = 0) -> TorchStep:
    """The released training step from hmljax's ``params`` (a ChmcnnMLP's; ``[E, ...]`` leaves when ``members=E``)."""
    nets = [ConstrainedFFNN(problem.num_features, problem.hidden, problem.num_nodes, dropout)
            for _ in range(max(members, 1))]
    for e, net in enumerate(nets):
        load_flax_params(net, member_params(params, e) if members else params)
    model = Members(nets) if members else nets[0]
    model.train()
    R_1xNxN = torch.tensor(problem.ancestry_CxC.astype(np.float64)).unsqueeze(0)
    # The released code's uint8 mask was torch's boolean mask before 1.2; torch now warns on uint8 and
    # converts it, so the mask is written as the bool it means (same selection, no warning per step).
    to_eval = torch.tensor(problem.evaluated_C, dtype=torch.bool)
    optimizer = torch.optim.Adam(model.parameters(), lr=problem.lr, weight_decay=problem.weight_decay)
    criterion = nn.BCELoss()

    def prepare(x, y):
        # The released loader yields the float64 tensors the whole dataset is kept in.
        return torch.tensor(np.asarray(x, np.float64)), torch.tensor(np.asarray(y, np.float64))

    def step(x, labels):
        optimizer.zero_grad()
        # RARE's MultiHeadedModel: every member's released MCLoss on the same batch, summed.
        loss = sum(released_loss(member(x.float()), labels, R_1xNxN, to_eval, criterion) for member in nets)
        loss.backward()
        optimizer.step()
        return loss

    return TorchStep("as published", model, prepare, step, "torch.optim.Adam (default: single-tensor on CPU)")


def released_loss(output, labels, R_1xNxN, to_eval, criterion) -> torch.Tensor:
    """The released training loss on sigmoid ``output`` [B, N]: BCE of the float64 constrained outputs."""
    constr_output = get_constr_out(output, R_1xNxN)
    train_output = get_constr_out(labels * output.double(), R_1xNxN)
    train_output = (1 - labels) * constr_output.double() + labels * train_output
    return criterion(train_output[:, to_eval], labels[:, to_eval])


class Members(nn.ModuleList):
    """E networks in a list (RARE's ``MultiHeadedModel``): hmljax's stacked layout is theirs, stacked."""

    def flax_layout(self) -> dict[str, np.ndarray]:
        per = [linear_layout(m) for m in self]
        return {k: np.stack([p[k] for p in per]) for k in per[0]}


# ---------------------------------------------------------------- same algorithm


def edge_index(problem: Problem) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per height level, ``(child_E, parent_E)`` int64: the edges into the parents of that height."""
    return [(torch.as_tensor(child.astype(np.int64)), torch.as_tensor(parent[segment].astype(np.int64)))
            for child, segment, parent in problem.hierarchy.propagation_levels]


def mcm_sparse(z_BxC: torch.Tensor, edges: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Max over each node and its descendants, level by level: every parent takes its children's max.

    Parents of height k only have children of height < k, so each level reads
    finished values. ``include_self=True`` keeps the parent's own score in its
    max; at ties torch splits the gradient evenly, as hmljax's segment max does.
    """
    B = z_BxC.shape[0]
    for child_E, parent_E in edges:
        z_BxC = z_BxC.scatter_reduce(1, parent_E.expand(B, -1), z_BxC.index_select(1, child_E), reduce="amax",
                                     include_self=True)
    return z_BxC


def mc_loss_sparse(z_BxC: torch.Tensor, y_BxC: torch.Tensor, edges, eval_idx: torch.Tensor) -> torch.Tensor:
    """hmljax's MCLoss in PyTorch: mean BCE-from-logits of ``where(y, MCM(z | y), MCM(z))`` over ``eval_idx``.

    Negatives take the max over all descendants, positives over their positive
    descendants only (the others set to float32's lowest value, as hmljax does).
    """
    B = z_BxC.shape[0]
    pos = y_BxC > 0
    both_2BxC = mcm_sparse(torch.cat([z_BxC, torch.where(pos, z_BxC, torch.finfo(z_BxC.dtype).min)]), edges)
    out_BxC = torch.where(pos, both_2BxC[B:], both_2BxC[:B])
    return F.binary_cross_entropy_with_logits(out_BxC.index_select(1, eval_idx), y_BxC.index_select(1, eval_idx))


def _fast_adam(params, problem: Problem) -> tuple[torch.optim.Adam, str]:
    try:
        return torch.optim.Adam(params, lr=problem.lr, weight_decay=problem.weight_decay, fused=True), "fused"
    except (RuntimeError, ValueError):  # builds without a fused CPU kernel
        return torch.optim.Adam(params, lr=problem.lr, weight_decay=problem.weight_decay, foreach=True), "foreach"


def _float32_batch(x, y):
    # Copies: batches may be read-only views of a memmap.
    return torch.tensor(np.asarray(x, np.float32)), torch.tensor(np.asarray(y, np.float32))


class StackedMLP(nn.Module):
    """E MLPs as stacked ``[E, in, out]`` weights: logits ``[E, B, C]``, one ``baddbmm`` per layer.

    Dropout on the ``[E, B, H]`` activations draws a separate mask per member,
    as E separate networks would.
    """

    def __init__(self, members: int, num_features: int, hidden: int, num_outputs: int, dropout: float):
        super().__init__()
        sizes = [(num_features, hidden), (hidden, hidden), (hidden, num_outputs)]
        self.kernels = nn.ParameterList([nn.Parameter(torch.zeros(members, i, o)) for i, o in sizes])
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(members, 1, o)) for _, o in sizes])
        self.drop = nn.Dropout(dropout)

    def forward(self, x_BxD: torch.Tensor) -> torch.Tensor:
        h = x_BxD.expand(len(self.kernels[0]), *x_BxD.shape)
        for k, (w, b) in enumerate(zip(self.kernels, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if k < len(self.kernels) - 1:
                h = self.drop(torch.relu(h))
        return h

    def load(self, params) -> None:
        """From hmljax's stacked parameters (``dense_k/kernel`` ``[E, in, out]``)."""
        with torch.no_grad():
            for k, (w, b) in enumerate(zip(self.kernels, self.biases, strict=True)):
                w.copy_(torch.as_tensor(np.array(params[f"dense_{k}"]["kernel"])))
                b.copy_(torch.as_tensor(np.array(params[f"dense_{k}"]["bias"]))[:, None, :])

    def flax_layout(self) -> dict[str, np.ndarray]:
        out = {}
        for k, (w, b) in enumerate(zip(self.kernels, self.biases, strict=True)):
            out[f"dense_{k}/kernel"] = w.detach().cpu().numpy()
            out[f"dense_{k}/bias"] = b.detach().cpu().numpy()[:, 0, :]
        return out


def _network(problem: Problem, params, *, dropout: float, members: int) -> nn.Module:
    """The same-algorithm network in train mode from hmljax's parameters: one MLP, or E stacked."""
    if members:
        model = StackedMLP(members, problem.num_features, problem.hidden, problem.num_nodes, dropout)
        model.load(params)
    else:
        model = mlp(problem.num_features, problem.hidden, problem.num_nodes, dropout)
        load_flax_params(model, params)
    return model.train()


def _loss_fn(problem: Problem, members: int) -> Callable:
    """``loss(logits, y)``: the sparse MCLoss, summed over members for ``[E, B, C]`` logits.

    The members' rows go through the constraint as one ``[E * B, C]`` batch: every
    member has the same B rows and evaluated nodes, so E times the mean over all of
    them is the sum of the members' means.
    """
    edges = edge_index(problem)
    eval_idx = torch.as_tensor(np.flatnonzero(problem.evaluated_C))
    if not members:
        return lambda z, y: mc_loss_sparse(z, y, edges, eval_idx)

    def loss(z_ExBxC, y_BxC):
        E, B, C = z_ExBxC.shape
        return E * mc_loss_sparse(z_ExBxC.reshape(E * B, C), y_BxC.repeat(E, 1), edges, eval_idx)

    return loss


def same_algorithm(problem: Problem, params, *, dropout: float, members: int = 0) -> TorchStep:
    """hmljax's sparse constraint and a fused Adam, eager (E stacked networks when ``members=E``)."""
    model = _network(problem, params, dropout=dropout, members=members)
    loss_fn = _loss_fn(problem, members)
    optimizer, impl = _fast_adam(model.parameters(), problem)

    def step(x, y):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    return TorchStep("same algorithm", model, _float32_batch, step, f"torch.optim.Adam({impl}=True)")


# ---------------------------------------------------------------- best effort


def functional_loss(model: nn.Module, loss_fn: Callable) -> tuple[list[str], list[torch.Tensor], Callable]:
    """(names, parameters, ``loss_of(ps, x, y)``): ``model``'s loss as a function of its parameters in
    ``named_parameters`` order, for ``torch.func.grad`` (the compiled step's, and the witness's parts)."""
    names = [n for n, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]

    def loss_of(ps, x, y):
        named = {names[i]: ps[i] for i in range(len(names))}  # no zip(strict=...) in the traced code
        return loss_fn(torch.func.functional_call(model, named, (x,)), y)

    return names, params, loss_of


def adam_state(params) -> tuple[list, list, list]:
    """Zero first and second moments and step counts (tensors: capturable) for :func:`adam_in_graph`."""
    return ([torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params],
            [torch.zeros((), dtype=torch.float32) for _ in params])


def adam_in_graph(problem, params, grads, exp_avgs, exp_avg_sqs, steps, *, capturable: bool = True) -> None:
    """torch's Adam on ``params`` in place, in a form ``torch.compile`` traces whole.

    foreach + capturable (step count and bias corrections as tensors in the graph): on CPU with torch 2.13,
    foreach without capturable fails to trace, and the single-tensor update (either capturable setting)
    compiles under inductor to weights 2 lr per step off eager Adam's (the equality check caught it;
    aot_eager was right). Eager, ``capturable=True`` needs a GPU: pass False on CPU."""
    with torch.no_grad():
        adam_functional(params, list(grads), exp_avgs, exp_avg_sqs, [], steps, foreach=True, capturable=capturable,
                        amsgrad=False, beta1=BETAS[0], beta2=BETAS[1], lr=problem.lr,
                        weight_decay=problem.weight_decay, eps=EPS, maximize=False)


def _whole_step(model: nn.Module, problem: Problem, loss_fn: Callable):
    """The same-algorithm step as one traceable function: grad from torch.func, update from torch's Adam."""
    _, params, loss_of = functional_loss(model, loss_fn)
    exp_avgs, exp_avg_sqs, steps = adam_state(params)
    grad_and_loss = torch.func.grad_and_value(loss_of)

    def step(x, y):
        grads, loss = grad_and_loss(tuple(p.detach() for p in params), x, y)
        adam_in_graph(problem, params, grads, exp_avgs, exp_avg_sqs, steps)
        return loss

    return step


def _compile_whole(step, x, y) -> tuple[Callable | None, dict]:
    """``torch.compile(step, fullgraph=True)``, compiled by a first call on ``(x, y)`` (which takes one step).

    Returns the compiled function (None if compiling failed) and what to record:
    compile seconds, dynamo's graph and graph-break counts, the first loss, or the error.
    Resets dynamo first: every build is a new closure of the same code, and old
    entries would count against dynamo's recompile limit; steps compiled
    earlier recompile if called again.
    """
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    fn = torch.compile(step, fullgraph=True)
    t0 = time.perf_counter()
    try:
        loss = fn(x, y)
    except Exception as e:  # noqa: BLE001 - no C++ compiler, an unsupported op, a graph break: the level is unavailable
        return None, {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:400]}"}
    return fn, {"compile_s": time.perf_counter() - t0, "graph_breaks": sum(counters["graph_break"].values()),
                "graphs": counters["stats"]["unique_graphs"], "first_loss": loss}


def compiled_step(model: nn.Module, problem, loss_fn: Callable, x_np, y_np) -> TorchStep:
    """The best-effort level of any method: ``model``'s whole step (forward, ``loss_fn``, backward and
    Adam; :func:`_whole_step`) under ``torch.compile``, compiled here on the batch ``(x_np, y_np)``.

    Compiling runs one step, so the returned step has already taken it (its
    loss is ``first_loss``); :func:`check_level` counts it as step 1.
    """
    fn, info = _compile_whole(_whole_step(model, problem, loss_fn), *_float32_batch(x_np, y_np))
    impl = "torch.optim.adam.adam(foreach, capturable) in the graph"
    return TorchStep("best effort", model, _float32_batch, fn, impl, compile_s=info.get("compile_s"),
                     graph_breaks=info.get("graph_breaks"), graphs=info.get("graphs"), error=info.get("error"),
                     first_loss=info.get("first_loss"))


def best_effort(problem: Problem, params, *, dropout: float, x_np, y_np, members: int = 0) -> TorchStep:
    """The whole same-algorithm step under ``torch.compile`` (:func:`compiled_step`)."""
    model = _network(problem, params, dropout=dropout, members=members)
    return compiled_step(model, problem, _loss_fn(problem, members), x_np, y_np)


def pick_level(level: str, builders: dict[str, Callable[[], TorchStep]]) -> TorchStep:
    """``builders[level]()``: every method's ``build`` names its three levels' constructors here."""
    if level not in builders:
        raise ValueError(f"unknown level {level!r}; choose one of {LEVELS}")
    return builders[level]()


def build(level: str, problem: Problem, params, *, dropout: float, x_np, y_np, members: int = 0) -> TorchStep:
    """The level's step from hmljax's ``params``; ``(x_np, y_np)`` is the batch the compiled level compiles on.

    ``members=E`` builds E networks trained together from stacked (``[E, ...]``) params.
    """
    return pick_level(level, {
        "as published": lambda: as_published(problem, params, dropout=dropout, members=members),
        "same algorithm": lambda: same_algorithm(problem, params, dropout=dropout, members=members),
        "best effort": lambda: best_effort(problem, params, dropout=dropout, x_np=x_np, y_np=y_np, members=members),
    })


# ---------------------------------------------------------------- equality with hmljax


def hmljax_trajectory(problem: Problem, batches, members: int = 0) -> tuple[dict, list[float], dict[str, np.ndarray]]:
    """hmljax's C-HMCNN step, dropout off, over ``batches`` [(x, y)]: (initial params, losses, final params).

    ``members=E``: E stacked networks (hmljax's vmapped ensemble); the losses are
    the members' sum, as the torch levels report them (hmljax reports their mean).
    """
    import jax
    import jax.numpy as jnp

    from hmljax.constraints import constraint_graph
    from hmljax.models import ChmcnnMLP, stacked_forward
    from hmljax.training import init_state, jit_train, make_optimizer, make_train_step

    model = ChmcnnMLP(hidden=problem.hidden, num_outputs=problem.num_nodes, dropout=0.0)
    opt = make_optimizer(lr=problem.lr, weight_decay=problem.weight_decay)
    state = init_state(model, opt, problem.num_features, key=jax.random.key(0), members=members)
    params0 = jax.tree.map(np.asarray, state.params)
    graph = constraint_graph(problem.hierarchy)
    forward = stacked_forward(model, members) if members else None
    step = jit_train(make_train_step(model, opt, ancestry=graph, evaluated=problem.evaluated_C, forward=forward))
    losses = []
    for x, y in batches:
        state, loss = step(state, jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32),
                           jnp.ones(len(x), bool), jax.random.key(1))
        losses.append(float(loss) * max(members, 1))
    final = flat_params(state.params)
    return params0, losses, final


def check_level(ts: TorchStep, reference: tuple[list[float], dict[str, np.ndarray]], batches, *,
                loss_rtol: float = 1e-4, param_rtol: float = 1e-4, param_atol: float = 1e-6,
                lr: float | None = None, travel_tol: float = 0.02, noise_norm_tol: float = 0.0,
                trace: dict | None = None, initial: dict | None = None) -> dict:
    """Runs ``ts`` (built with dropout 0 from the reference's initial params) over ``batches``; compares with hmljax.

    ``reference`` is ``(losses, final params)`` from :func:`hmljax_trajectory` on
    the same batches. The loss must agree at every step and every parameter at
    the end (raises AssertionError on a mismatch).

    Each parameter must be within ``param_rtol * |ref| + param_atol`` of hmljax's,
    or, given ``lr``, within ``travel_tol`` of the farthest Adam can move it
    (``steps * lr``). Why the second bound: float32 sums in another order give
    gradients a few ulps apart, and Adam divides by ``sqrt(v)``, so on an element
    whose gradient is near zero or changes sign those ulps become a visible share
    of one step (seen on 2 of 77,000 first-layer weights of cellcycle_GO at batch
    64). A level that trains differently (another lr, loss or weight decay) moves
    every element by a whole step or more and fails either bound. The elements
    that needed the second bound are counted in the result.

    ``noise_norm_tol`` (default 0: off) accepts a tensor that fails both
    bounds when every element is within two of Adam's largest steps
    (``2 * steps * lr``) and the disagreement's norm is at most ``noise_norm_tol``
    times the norm of the tensor's update. Why: a gradient element that is a sum
    of near-cancelling terms (a ReLU or a min switching on a near-tie) has its
    sign decided by float32 rounding, on either side, and Adam turns that into a
    whole step; one ReLU flip at batch 4 moves a unit's whole fan-in. A float64
    run of the same step finds such elements on both sides (HLSTM:
    ``benchmarks/hlstm_float64_witness.py``). A level that computes something
    else (another lr, loss or weight decay) moves the whole tensor, and fails.

    ``initial`` (hmljax's ``layer/name`` params before the first step) measures each tensor's update; by
    default the level's own before its first step, which for the compiled level is after compiling, one
    step in.

    ``trace``, a dict, receives the level's ``losses`` and a copy of its ``params``
    after every step (the compiled level's first: after compiling) before anything
    is compared: a caller can look at where a failing level parted (:func:`check_levels`' ``explain``).
    """
    ref_losses, ref_final = reference
    if initial is None:
        initial = {k: v.copy() for k, v in ts.params_flax_layout().items()}
    losses, snapshots = [], []
    if trace is not None:
        trace.update(losses=losses, params=snapshots)
    for k, (x, y) in enumerate(batches):
        if k == 0 and ts.first_loss is not None:  # the compiled level took step 1 compiling
            losses.append(float(ts.first_loss.detach()))
        else:
            losses.append(float(ts.step(*ts.prepare(x, y)).detach()))
        if trace is not None:  # copies: on CPU the layout's arrays share the parameters' memory
            snapshots.append({n: np.array(v, copy=True) for n, v in ts.params_flax_layout().items()})
    loss_diff = max(C.assert_close(f"{ts.level}: loss at step {k + 1}", a, b, rtol=loss_rtol)
                    for k, (a, b) in enumerate(zip(losses, ref_losses, strict=True)))
    figures = compare_params(ts.level, ts.params_flax_layout(), ref_final, initial, len(batches),
                             param_rtol=param_rtol, param_atol=param_atol, lr=lr, travel_tol=travel_tol,
                             noise_norm_tol=noise_norm_tol)
    return {"passed": True, "steps": len(batches), "batch": len(batches[0][0]), "dropout": 0.0,
            "loss_max_abs_diff": loss_diff, **figures, "loss_rtol": loss_rtol,
            "losses_torch": losses, "losses_hmljax": list(ref_losses)}


def compare_params(level: str, final: dict, ref_final: dict, initial: dict, steps: int, *, param_rtol: float = 1e-4,
                   param_atol: float = 1e-6, lr: float | None = None, travel_tol: float = 0.02,
                   noise_norm_tol: float = 0.0) -> dict:
    """:func:`check_level`'s parameter rule after ``steps`` steps from ``initial``: its figures, or an
    AssertionError naming the first tensor that breaks it."""
    travel = travel_tol * steps * lr if lr else 0.0
    by_name, update_rel, loose, outliers, noise_max = {}, 0.0, 0, 0, 0.0
    for name, ref in ref_final.items():
        got, want = np.asarray(final[name], np.float64), np.asarray(ref, np.float64)
        if got.shape != want.shape:
            raise AssertionError(f"{level}: {name}: shapes differ {got.shape} vs {want.shape}")
        diff = np.abs(got - want)
        tight = param_rtol * np.abs(want) + param_atol
        beyond = diff > np.maximum(tight, travel)
        n_out = int(beyond.sum())
        noise = float(np.linalg.norm(got - want) / max(np.linalg.norm(want - initial[name]), 1e-30))
        allowed = noise_norm_tol and lr and noise <= noise_norm_tol and float(diff.max()) <= 2 * steps * lr
        if n_out and not allowed:
            worst = float(np.max(diff / np.maximum(tight, travel)))
            raise AssertionError(f"{level}: {name} after {steps} steps: the two sides disagree "
                                 f"(max scaled error {worst:.3g}; {int(np.sum(diff > tight))} of {diff.size} "
                                 f"elements beyond {param_rtol:g} |ref| + {param_atol:g}; {n_out} beyond the "
                                 f"travel bound too; |diff| / |update| {noise:.3g})")
        loose += int(np.sum(diff > tight))
        outliers += n_out
        noise_max = max(noise_max, noise) if n_out else noise_max
        by_name[name] = float(diff.max())
        update = np.abs(want - initial[name]).max()
        update_rel = max(update_rel, by_name[name] / max(float(update), 1e-30))
    return {"param_max_abs_diff": max(by_name.values()),
            "param_max_abs_diff_by_name": by_name, "param_diff_over_update": update_rel,
            "param_rtol": param_rtol, "param_atol": param_atol,
            "travel_tol": travel_tol if lr else None, "elements_within_travel_tol_only": loose - outliers,
            "noise_norm_tol": noise_norm_tol, "elements_beyond_both_bounds": outliers,
            "noisy_tensor_max_diff_norm_over_update_norm": noise_max}


def check_levels(build_fn: Callable, problem, params0, reference, batches, levels=LEVELS, members: int = 0,
                 explain: Callable | None = None) -> dict:
    """Each of ``levels``, built by ``build_fn`` from ``params0`` with dropout off, against hmljax's ``reference``.

    ``reference`` is ``(losses, final params)`` of hmljax's trajectory on ``batches``
    from ``params0``; returns {level: the check's figures, or ``passed: False`` and the error}.
    Any method's levels use it: ``build_fn(level, problem, params, *, dropout, x_np, y_np, members)``.

    ``explain(level, error, trace)``, for a method whose trajectories may part for a reason the parameter rule
    cannot see (HLSTM: :func:`benchmarks._torch_hlstm.explain_near_tie`), is asked about a failed level with
    its losses and parameters after every step (:func:`check_level`'s ``trace``); what it returns (figures)
    replaces the failure, None keeps it.
    """
    out = {}
    # Where both sides start: the compiled level has taken a step by the time it is built.
    initial = flat_params(params0)
    for level in levels:
        ts = build_fn(level, problem, params0, dropout=0.0, x_np=batches[0][0], y_np=batches[0][1], members=members)
        if ts.error:
            out[level] = {"passed": False, "error": ts.error}
            continue
        trace: dict = {}
        try:
            out[level] = check_level(ts, reference, batches, lr=problem.lr,
                                     noise_norm_tol=problem.noise_norm_tol, trace=trace, initial=initial)
        except AssertionError as e:
            out[level] = {"passed": False, "error": str(e)}
            if explain is not None and (why := explain(level, str(e), trace)) is not None:
                out[level] = why
        if ts.compile_s is not None:
            out[level] |= {"compile_s": ts.compile_s, "graph_breaks": ts.graph_breaks, "graphs": ts.graphs}
    return out


def check_all(problem: Problem, batches, levels=LEVELS, members: int = 0) -> tuple[dict, dict]:
    """Equality checks of ``levels`` against one hmljax trajectory: ({level: figures or error}, initial params)."""
    params0, ref_losses, ref_final = hmljax_trajectory(problem, batches, members)
    return check_levels(build, problem, params0, (ref_losses, ref_final), batches, levels, members), params0
