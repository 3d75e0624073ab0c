"""HLSTM's train step in PyTorch at three levels, checked equal to hmljax's ``method=hlstm`` step.

HLSTM has no released code, so the three levels of issue 19 read:

- ``as published``: the paper written in stock PyTorch with C-HMCNN's released
  MCLoss, which the paper builds on: ``nn.LSTM`` over ``x`` repeated L times
  (eq. 6-11; its second bias held at zero, since the paper's LSTM has one), a
  Linear-ReLU transition and a Linear local head per level, a Linear global
  head; sigmoid outputs; LHLoss as ``nn.BCELoss`` of the min of each node's and
  its parents' probabilities (eq. 1-3, a padded parent table and ``amin``);
  MCLoss as C-HMCNN's ``get_constr_out`` (the dense float64 ``[B, C, C]`` max) and
  ``nn.BCELoss``; the hybrid ``(1 - b_r) LHLoss + b_r MCLoss`` of per-element
  means; the default ``torch.optim.Adam``.
- ``same algorithm``: hmljax's algorithm in PyTorch. The input's gate projection
  computed once (``x`` is the same at every level; ``nn.LSTM`` would project it
  L times) and the cell written out per level, its backward by hand so that the
  recurrent kernel's gradient is one product over all levels (``_LevelStates``,
  as hmljax's ``lstm_over_levels``); both constraints in logit space
  (``min``/``max`` commute with the sigmoid): MCLoss with the sparse
  ``scatter_reduce(amax)`` pass of ``_torch_levels`` and LHLoss with one gather
  of the parent table and ``amin``; BCE from logits; ``Adam(fused=True)``.
- ``best effort``: that step, optimiser included, as one
  ``torch.compile(fullgraph=True)`` graph (``_torch_levels._whole_step``).

Dropout acts where hmljax's ``LevelLSTM`` puts it: on what each head reads
(``A^h`` and the transition's output), never on the recurrence.
:func:`check_all` runs K steps of each level and of hmljax from the same
parameters on the same batches with dropout off, and compares the loss at every
step and every parameter at the end (``_torch_levels.check_level``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from benchmarks import _common as C
from benchmarks import _torch_levels as L

LEVELS = L.LEVELS


@dataclasses.dataclass(frozen=True)
class HlstmProblem(L.Problem):
    """One dataset's HLSTM setting: C-HMCNN's :class:`Problem` plus the LSTM's shape and the loss mix."""

    transition: int = 0
    level_index: tuple = ()  # per level, the node indices its local head predicts
    b_r: float = 0.5
    # A few HLSTM gradient elements are near-cancelling sums (ReLUs, LMC's min on near-ties): float32
    # rounding picks their sign on either side and Adam makes it a step (check_level's noise_norm_tol).
    noise_norm_tol: float = 0.03

    @property
    def parent_table_CxP(self) -> np.ndarray:
        """int64 ``[C, P]``: each node and its evaluated parents (one hop), padded with ``C``.

        Index ``C`` is a sentinel column the losses append (the min's neutral
        element). Padding with the node itself would give the same values but not
        the same gradient: on a tie (the local heads start from one constant, so a
        child and a parent that share a level head start equal) ``amin`` splits the
        gradient evenly over every copy, and hmljax's scatter-min over each
        (node, parent) pair once.
        """
        ev = self.evaluated_C
        rows = [[j] + [int(p) for p in self.hierarchy.parents[j] if ev[p]] for j in range(self.num_nodes)]
        width = max(map(len, rows))
        return np.asarray([r + [self.num_nodes] * (width - len(r)) for r in rows], np.int64)

    @property
    def local_index(self) -> np.ndarray:
        """int64: the nodes the local heads fill, level after level (their outputs concatenated)."""
        return np.asarray([j for nodes in self.level_index for j in nodes], np.int64)


def _linear_from(lin: nn.Linear, kernel, bias=None) -> None:
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(np.array(kernel, np.float32).T))
        if bias is not None:
            lin.bias.copy_(torch.as_tensor(np.array(bias, np.float32)))


class _Heads(nn.Module):
    """The per-level transition + local head and the global head, shared by both networks."""

    def __init__(self, problem: HlstmProblem, dropout: float):
        super().__init__()
        H, T = problem.hidden, problem.transition
        self.transition = nn.ModuleList(nn.Linear(H, T) for _ in problem.level_index)
        self.local = nn.ModuleList(nn.Linear(T, len(n)) for n in problem.level_index)
        self.glob = nn.Linear(H, problem.num_nodes)
        self.drop = nn.Dropout(dropout)
        self.num_nodes = problem.num_nodes
        self.register_buffer("index", torch.as_tensor(problem.local_index))

    def local_part(self, h: int, a_BxH: torch.Tensor) -> torch.Tensor:
        return self.local[h](self.drop(torch.relu(self.transition[h](self.drop(a_BxH)))))

    def assemble(self, a_BxH: torch.Tensor, parts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(global logits, local logits ``[B, C]`` with the roots' at 0), as hmljax returns them."""
        local = a_BxH.new_zeros(a_BxH.shape[0], self.num_nodes).index_copy(1, self.index, torch.cat(parts, 1))
        return self.glob(self.drop(a_BxH)), local

    def load(self, params) -> None:
        for h in range(len(self.transition)):
            _linear_from(self.transition[h], params[f"transition_{h}"]["kernel"], params[f"transition_{h}"]["bias"])
            _linear_from(self.local[h], params[f"local_{h}"]["kernel"], params[f"local_{h}"]["bias"])
        _linear_from(self.glob, params["global"]["kernel"], params["global"]["bias"])

    def layout(self) -> dict[str, np.ndarray]:
        out = {}
        for name, lin in [*((f"transition_{h}", m) for h, m in enumerate(self.transition)),
                          *((f"local_{h}", m) for h, m in enumerate(self.local)), ("global", self.glob)]:
            out[f"{name}/kernel"] = lin.weight.detach().cpu().numpy().T
            out[f"{name}/bias"] = lin.bias.detach().cpu().numpy()
        return out


# ---------------------------------------------------------------- as published

# hmljax's gates are (f, i, ĉ, o) along the 4H axis; nn.LSTM's are (i, f, g, o). Swapping the first two
# blocks maps either order to the other.
def _swap_fi(w: np.ndarray, axis: int) -> np.ndarray:
    f, i, c, o = np.split(w, 4, axis=axis)
    return np.concatenate([i, f, c, o], axis=axis)


class PaperLSTM(nn.Module):
    """Eq. 6-13 in stock modules: ``nn.LSTM`` over ``x`` repeated L times, then the heads."""

    def __init__(self, problem: HlstmProblem, dropout: float):
        super().__init__()
        self.levels = len(problem.level_index)
        self.lstm = nn.LSTM(problem.num_features, problem.hidden)
        self.heads = _Heads(problem, dropout)

    def forward(self, x_BxD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a_LxBxH, _ = self.lstm(x_BxD.unsqueeze(0).expand(self.levels, -1, -1))
        parts = [self.heads.local_part(h, a_LxBxH[h]) for h in range(self.levels)]
        return self.heads.assemble(a_LxBxH[-1], parts)

    def load(self, params) -> None:
        with torch.no_grad():
            self.lstm.weight_ih_l0.copy_(torch.as_tensor(_swap_fi(np.array(params["gates_x"]["kernel"]), 1).T))
            self.lstm.weight_hh_l0.copy_(torch.as_tensor(_swap_fi(np.array(params["gates_a"]["kernel"]), 1).T))
            self.lstm.bias_ih_l0.copy_(torch.as_tensor(_swap_fi(np.array(params["gates_x"]["bias"]), 0)))
            self.lstm.bias_hh_l0.zero_()
        # The paper's gates have one bias (eq. 6-9); nn.LSTM's second is frozen at zero, not trained.
        self.lstm.bias_hh_l0.requires_grad_(False)
        self.heads.load(params)

    def flax_layout(self) -> dict[str, np.ndarray]:
        lstm = self.lstm
        return {"gates_x/kernel": _swap_fi(lstm.weight_ih_l0.detach().cpu().numpy().T, 1),
                "gates_x/bias": _swap_fi(lstm.bias_ih_l0.detach().cpu().numpy(), 0),
                "gates_a/kernel": _swap_fi(lstm.weight_hh_l0.detach().cpu().numpy().T, 1)} | self.heads.layout()


def _with_sentinel(v_BxC: torch.Tensor, fill: float) -> torch.Tensor:
    """``[B, C + 1]``: ``v`` and a column of ``fill`` (the parent table's padding index ``C``)."""
    return torch.cat([v_BxC, v_BxC.new_full((v_BxC.shape[0], 1), fill)], 1)


def paper_loss(problem: HlstmProblem) -> callable:
    """``loss((global, local) logits, y)``: the hybrid of eq. 5 on probabilities, MCLoss as C-HMCNN releases it."""
    R_1xCxC = torch.tensor(problem.ancestry_CxC.astype(np.float64)).unsqueeze(0)
    to_eval = torch.tensor(problem.evaluated_C)
    table = torch.as_tensor(problem.parent_table_CxP)
    bce = nn.BCELoss()

    def loss(out, y):
        glob, local = out
        mc = L.released_loss(torch.sigmoid(glob), y.double(), R_1xCxC, to_eval, bce)
        p = torch.sigmoid(local)
        # Eq. 2-3: a negative node takes the min of its own and its parents' outputs, a positive the min of
        # y_z l(z) over the same set (its parents are positive too: labels are closed under ancestors).
        # amin, not min(-1).values: on a tie both sides split the gradient evenly, as hmljax's scatter-min.
        lmc = torch.where(y > 0, _with_sentinel(y * p, 2.0)[:, table].amin(-1),
                          _with_sentinel(p, 2.0)[:, table].amin(-1))
        lh = bce(lmc[:, to_eval], y[:, to_eval])
        return (1 - problem.b_r) * lh + problem.b_r * mc

    return loss


def as_published(problem: HlstmProblem, params, *, dropout: float) -> L.TorchStep:
    model = PaperLSTM(problem, dropout)
    model.load(params)
    model.train()
    loss_fn = paper_loss(problem)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=problem.lr,
                                 weight_decay=problem.weight_decay)

    def step(x, y):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    return L.TorchStep("as published", model, L._float32_batch, step,
                       "torch.optim.Adam (default: single-tensor on CPU)")


# ---------------------------------------------------------------- same algorithm


class _LevelStates(torch.autograd.Function):
    """hmljax's ``lstm_over_levels``: every level's ``A^h [L, B, H]`` from ``x_proj [B, 4H]`` and ``W_a`` (torch's
    ``[4H, H]``), backpropagated by hand so that W_a's gradient is one ``[4H, (L-1)B] x [(L-1)B, H]`` product over
    all levels, where autograd would form and accumulate one ``[4H, H]`` product per level."""

    @staticmethod
    def forward(ctx, x_proj, w, levels: int):
        a, c, outs, c_prevs, acts = None, None, [], [], []
        for h in range(levels):
            z = x_proj if h == 0 else x_proj + a @ w.t()
            f, i, g, o = z.chunk(4, dim=-1)
            sf, si, tg, so = torch.sigmoid(f), torch.sigmoid(i), torch.tanh(g), torch.sigmoid(o)
            c_prev = torch.zeros_like(sf) if c is None else c
            c = sf * c_prev + si * tg
            tc = torch.tanh(c)
            a = so * tc
            outs.append(a)
            c_prevs.append(c_prev)
            acts.append(torch.stack([sf, si, tg, so, tc]))
        states = torch.stack(outs)
        ctx.save_for_backward(w, states, torch.stack(c_prevs), torch.stack(acts))
        ctx.levels = levels
        return states

    @staticmethod
    def backward(ctx, d_states):
        w, states, c_prevs, acts = ctx.saved_tensors
        d_a = torch.zeros_like(d_states[0])
        d_c = torch.zeros_like(d_states[0])
        d_z = [None] * ctx.levels
        for h in reversed(range(ctx.levels)):
            sf, si, tg, so, tc = acts[h].unbind(0)
            d_a = d_states[h] + d_a
            d_c = d_c + d_a * so * (1 - tc * tc)
            d_z[h] = torch.cat([d_c * c_prevs[h] * sf * (1 - sf), d_c * tg * si * (1 - si),
                                d_c * si * (1 - tg * tg), d_a * tc * so * (1 - so)], dim=-1)
            d_c = d_c * sf
            if h:
                d_a = d_z[h] @ w
        d_x = d_z[0]
        for dz in d_z[1:]:
            d_x = d_x + dz
        if ctx.levels == 1:
            return d_x, torch.zeros_like(w), None
        d_w = torch.cat(d_z[1:]).t() @ states[:-1].reshape(-1, states.shape[-1])
        return d_x, d_w, None


class LevelLSTM(nn.Module):
    """hmljax's ``LevelLSTM`` in torch: ``W_x x + b`` once, ``W_a A^{h-1}`` per level, the cell written out, and
    W_a's gradient as one product over the levels (:class:`_LevelStates`, as hmljax's custom VJP)."""

    def __init__(self, problem: HlstmProblem, dropout: float):
        super().__init__()
        H = problem.hidden
        self.gates_x = nn.Linear(problem.num_features, 4 * H)
        self.gates_a = nn.Linear(H, 4 * H, bias=False)
        self.heads = _Heads(problem, dropout)
        self.levels = len(problem.level_index)

    def forward(self, x_BxD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        states = _LevelStates.apply(self.gates_x(x_BxD), self.gates_a.weight, self.levels)
        parts = [self.heads.local_part(h, states[h]) for h in range(self.levels)]
        return self.heads.assemble(states[-1], parts)

    def load(self, params) -> None:
        _linear_from(self.gates_x, params["gates_x"]["kernel"], params["gates_x"]["bias"])
        _linear_from(self.gates_a, params["gates_a"]["kernel"])
        self.heads.load(params)

    def flax_layout(self) -> dict[str, np.ndarray]:
        return {"gates_x/kernel": self.gates_x.weight.detach().cpu().numpy().T,
                "gates_x/bias": self.gates_x.bias.detach().cpu().numpy(),
                "gates_a/kernel": self.gates_a.weight.detach().cpu().numpy().T} | self.heads.layout()


def logit_loss(problem: HlstmProblem) -> callable:
    """``loss((global, local) logits, y)``: hmljax's hybrid loss, both constraints in logit space."""
    edges = L.edge_index(problem)
    eval_idx = torch.as_tensor(np.flatnonzero(problem.evaluated_C))
    table = torch.as_tensor(problem.parent_table_CxP)

    def loss(out, y):
        glob, local = out
        mc = L.mc_loss_sparse(glob, y, edges, eval_idx)
        pos = y > 0
        # A positive's min skips negative parents (hmljax fills them with the largest float).
        big = torch.finfo(local.dtype).max
        neg_m = _with_sentinel(local, big)[:, table].amin(-1)
        pos_m = _with_sentinel(torch.where(pos, local, big), big)[:, table].amin(-1)
        m = torch.where(pos, pos_m, neg_m)
        lh = F.binary_cross_entropy_with_logits(m.index_select(1, eval_idx), y.index_select(1, eval_idx))
        return (1 - problem.b_r) * lh + problem.b_r * mc

    return loss


def _network(problem: HlstmProblem, params, dropout: float) -> LevelLSTM:
    model = LevelLSTM(problem, dropout)
    model.load(params)
    return model.train()


def same_algorithm(problem: HlstmProblem, params, *, dropout: float) -> L.TorchStep:
    model = _network(problem, params, dropout)
    loss_fn = logit_loss(problem)
    optimizer, impl = L._fast_adam(model.parameters(), problem)

    def step(x, y):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    return L.TorchStep("same algorithm", model, L._float32_batch, step, f"torch.optim.Adam({impl}=True)")


def best_effort(problem: HlstmProblem, params, *, dropout: float, x_np, y_np) -> L.TorchStep:
    return L.compiled_step(_network(problem, params, dropout), problem, logit_loss(problem), x_np, y_np)


def build(level: str, problem: HlstmProblem, params, *, dropout: float, x_np, y_np, members: int = 0) -> L.TorchStep:
    """The level's step from hmljax's HLSTM ``params``; ``(x_np, y_np)`` is the batch the compiled level compiles on."""
    if members:
        raise ValueError("HLSTM's benchmark trains one network (members=0)")
    return L.pick_level(level, {
        "as published": lambda: as_published(problem, params, dropout=dropout),
        "same algorithm": lambda: same_algorithm(problem, params, dropout=dropout),
        "best effort": lambda: best_effort(problem, params, dropout=dropout, x_np=x_np, y_np=y_np),
    })


# ---------------------------------------------------------------- equality with hmljax


def lmc_choices(problem, flat: dict, x, y):
    """LHLoss's min at ``flat``'s parameters on ``(x, y)``, in float64: ``(which entry of each node's
    parent-table row it picks [B, C], the row's values [B, C, P])``, as ``logit_loss`` takes it (a positive's
    negative parents and the padding at the largest float)."""
    nested: dict = {}
    for key, v in flat.items():
        layer, name = key.split("/")
        nested.setdefault(layer, {})[name] = np.asarray(v)
    model = _network(problem, nested, 0.0).double().eval()
    with torch.no_grad():
        _, local = model(torch.tensor(np.asarray(x), dtype=torch.float64))
    local, pos = local.cpu().numpy(), np.asarray(y) > 0
    big = np.finfo(np.float64).max
    pad = np.full((local.shape[0], 1), big)
    table = problem.parent_table_CxP
    vals = np.where(pos[..., None], np.concatenate([np.where(pos, local, big), pad], 1)[:, table],
                    np.concatenate([local, pad], 1)[:, table])
    return vals.argmin(-1), vals


def near_tie_switches(problem, h_snaps: list[dict], t_snaps: list[dict], batches, limit: int = 5) -> dict:
    """Where the two float32 sides' next steps take LHLoss's min from different entries: each side's
    parameters after step k, on batch k + 1, in float64 (evaluated nodes only). A switch at a near-tie (the
    two entries equal to a few float32 roundings) moves that sample's whole LHLoss gradient between a level
    and its parent's, which Adam turns into whole steps on both levels' heads and the LSTM: float32 rounding,
    which either side could have resolved either way."""
    ev = np.flatnonzero(problem.evaluated_C)
    found, total = [], 0
    for k in range(min(len(h_snaps), len(t_snaps), len(batches) - 1)):
        x, y = batches[k + 1]
        (ch, vh), (ct, vt) = lmc_choices(problem, h_snaps[k], x, y), lmc_choices(problem, t_snaps[k], x, y)
        for b, c in np.argwhere(ch[:, ev] != ct[:, ev]):
            node, total = int(ev[c]), total + 1
            if len(found) < limit:
                i, j = int(ch[b, node]), int(ct[b, node])
                gap = [abs(v[b, node, i] - v[b, node, j]) / max(abs(v[b, node, i]), 1e-30) for v in (vh, vt)]
                found.append({"step": k + 2, "sample": int(b), "node": node,
                              "row": [int(r) for r in problem.parent_table_CxP[node]],
                              "hmljax_picks": i, "torch_picks": j,
                              "relative_gap_at_hmljax_point": float(gap[0]),
                              "relative_gap_at_torch_point": float(gap[1])})
    return {"switches": total, "first": found}


# Entries of LHLoss's min this close (relative) are a near-tie float32 rounding decides: a few ulps (2^-24 = 6e-8).
TIE_RTOL = 1e-6


def explain_near_tie(problem: HlstmProblem, batches, h_snaps: list[dict], h_losses: list[float], params0: dict,
                     *, min_steps: int = 2) -> Callable:
    """``check_levels``' ``explain`` for HLSTM: a level whose trajectory parts from hmljax's only after LHLoss's
    min switched entries at a near-tie (:data:`TIE_RTOL`) passes on the steps before the switch, if they are at
    least ``min_steps`` and pass the loss and parameter rules; the result names the switch and the steps checked.

    Why: a positive's min over a node and its parents is pushed up, which drives the two entries together;
    once they are equal to a few float32 roundings, either side may take either, and that sample's LHLoss
    gradient then goes to the other level's heads (and through the LSTM), which Adam makes whole steps. It is
    rounding, not another computation, and no tolerance on parameters after it tells the two apart
    (``benchmarks/hlstm_float64_witness.py``)."""
    initial = L.flat_params(params0)

    def explain(level: str, error: str, trace: dict) -> dict | None:
        t_snaps, losses = trace.get("params", []), trace.get("losses", [])
        ties = near_tie_switches(problem, h_snaps, t_snaps, batches, limit=1)
        if not ties["first"]:
            return None
        first = ties["first"][0]
        clean = first["step"] - 1  # the steps before the one whose min switched
        if (clean < min_steps or len(t_snaps) < clean or len(losses) < clean
                or max(first["relative_gap_at_hmljax_point"], first["relative_gap_at_torch_point"]) > TIE_RTOL):
            return None
        try:
            loss_diff = max(C.assert_close(f"{level}: loss at step {k + 1}", a, b, rtol=1e-4)
                            for k, (a, b) in enumerate(zip(losses[:clean], h_losses[:clean], strict=True)))
            figures = L.compare_params(level, t_snaps[clean - 1], h_snaps[clean - 1], initial, clean,
                                       lr=problem.lr, noise_norm_tol=problem.noise_norm_tol)
        except AssertionError:
            return None
        return {"passed": True, "steps": clean, "batch": len(batches[0][0]), "dropout": 0.0,
                "loss_max_abs_diff": loss_diff, **figures, "loss_rtol": 1e-4,
                "near_tie": first | {"lhloss_switches": ties["switches"]},
                "steps_run": len(batches), "failed_over_all_steps": error,
                "losses_torch": losses, "losses_hmljax": list(h_losses)}

    return explain


def check_all(problem: HlstmProblem, method, batches, levels=LEVELS) -> tuple[dict, dict]:
    """Checks of ``levels`` against hmljax's ``method`` (dropout 0) on ``batches``: (checks, initial params).

    A level that fails only after a near-tie of LHLoss's min passes on the steps before it
    (:func:`explain_near_tie`), and its figures say so."""
    from benchmarks._engine_levels import method_trajectory

    h_snaps: list[dict] = []
    params0, losses, final = method_trajectory(method, batches, h_snaps)
    return L.check_levels(build, problem, params0, (losses, final), batches, levels,
                          explain=explain_near_tie(problem, batches, h_snaps, losses, params0)), params0
