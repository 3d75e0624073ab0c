"""HMT-Net's train step (group heads, group feature noise, the group-weighted loss) in PyTorch at three levels.

HMT-Net has no released code (REFERENCE.md §4), so the levels read, for
hmljax's ``method=hmt`` on a flat dataset (an MLP encoder, Linear-ReLU-Dropout
per layer; head g a Linear on ``f + δ_g``, ``δ_g ~ N(0, σ_g² I)`` at training;
the heads' scores scattered back into class order):

- ``as published``: the paper written in stock PyTorch on DB's conventions
  (``nn.Sequential`` encoder, an ``nn.ModuleList`` of heads, ``torch.randn_like``
  noise per group, the scores fused by ``torch.cat`` and a permutation) and its
  loss as eq. 5-7 write it: ``eta`` times the BCE over all classes plus
  ``1 - eta`` times the sum over the groups of each head's own BCE (one
  ``binary_cross_entropy_with_logits`` call per group and one for the whole);
  the default ``torch.optim.Adam`` (coupled weight decay, as hmljax's ``adam``).
- ``same algorithm``: hmljax's: the same network, the loss in one pass as BCE
  times the fixed class weight ``C (eta / C + (1 - eta) / |C_g|)`` that eq. 5-7
  amount to (REFERENCE.md §4.1), ``Adam(fused=True)``.
- ``best effort``: that step with its optimiser as one ``torch.compile(fullgraph=True)`` graph.

The equality checks run with the noise and dropout off (``noise_lambda=0``,
``dropout=0``); the timings with both on.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from benchmarks import _torch_levels as L

LEVELS = L.LEVELS


@dataclasses.dataclass(frozen=True)
class HmtProblem:
    """One dataset's HMT-Net setting: the network's sizes, the groups, their σ and the loss mix."""

    num_features: int
    hidden: int
    encoder_layers: int
    group_index: tuple  # per group, the class indices its head scores
    sigmas: tuple  # σ_g per group (the timings'; the checks build with dropout 0, which also turns the noise off)
    eta: float = 0.5
    lr: float = 1e-3
    weight_decay: float = 1e-5

    @property
    def num_classes(self) -> int:
        return sum(len(g) for g in self.group_index)

    @property
    def inverse(self) -> np.ndarray:
        """int64 ``[C]``: class c's position in the heads' concatenated scores."""
        order = np.concatenate([np.asarray(g, np.int64) for g in self.group_index])
        inv = np.empty_like(order)
        inv[order] = np.arange(order.size)
        return inv

    @property
    def class_weight_C(self) -> np.ndarray:
        """float32 ``[C]``: ``C (eta / C + (1 - eta) / |C_g|)``, the weight eq. 5-7 give each class's BCE."""
        C = self.num_classes
        w = np.zeros(C, np.float64)
        for g in self.group_index:
            w[list(g)] = C * (self.eta / C + (1 - self.eta) / len(g))
        return w.astype(np.float32)


class GroupHeadsNet(nn.Module):
    """The encoder, the group heads with their noise, and the fusion back into class order."""

    def __init__(self, problem: HmtProblem, dropout: float):
        super().__init__()
        layers, width = [], problem.num_features
        for _ in range(problem.encoder_layers):
            layers += [nn.Linear(width, problem.hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = problem.hidden
        self.encoder = nn.Sequential(*layers)
        self.heads = nn.ModuleList(nn.Linear(width, len(g)) for g in problem.group_index)
        # The noise is on exactly when dropout is (both are training noise; the checks turn both off).
        self.sigmas = [float(s) if dropout > 0 else 0.0 for s in problem.sigmas]
        self.register_buffer("inverse", torch.as_tensor(problem.inverse))

    def group_logits(self, x_BxD: torch.Tensor) -> list[torch.Tensor]:
        f = self.encoder(x_BxD)
        return [head(f + sigma * torch.randn_like(f)) if self.training and sigma > 0 else head(f)
                for head, sigma in zip(self.heads, self.sigmas, strict=True)]

    def forward(self, x_BxD: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.group_logits(x_BxD), dim=1).index_select(1, self.inverse)

    def load(self, params) -> None:
        with torch.no_grad():
            encoders = [m for m in self.encoder if isinstance(m, nn.Linear)]
            for name, lin in [*((f"encoder_{k}", m) for k, m in enumerate(encoders)),
                              *((f"head_{g}", m) for g, m in enumerate(self.heads))]:
                lin.weight.copy_(torch.as_tensor(np.array(params[name]["kernel"], np.float32).T))
                lin.bias.copy_(torch.as_tensor(np.array(params[name]["bias"], np.float32)))

    def flax_layout(self) -> dict[str, np.ndarray]:
        encoders = [m for m in self.encoder if isinstance(m, nn.Linear)]
        out = {}
        for name, lin in [*((f"encoder_{k}", m) for k, m in enumerate(encoders)),
                          *((f"head_{g}", m) for g, m in enumerate(self.heads))]:
            out[f"{name}/kernel"] = lin.weight.detach().cpu().numpy().T
            out[f"{name}/bias"] = lin.bias.detach().cpu().numpy()
        return out


def _network(problem: HmtProblem, params, dropout: float) -> GroupHeadsNet:
    model = GroupHeadsNet(problem, dropout)
    model.load(params)
    return model.train()


def _eager_step(model, loss_fn, optimizer):
    def step(x, y):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, x, y)
        loss.backward()
        optimizer.step()
        return loss

    return step


def as_published(problem: HmtProblem, params, *, dropout: float) -> L.TorchStep:
    model = _network(problem, params, dropout)
    groups = [torch.tensor(g) for g in problem.group_index]
    bce = F.binary_cross_entropy_with_logits

    def loss_fn(model, x, y):
        parts = model.group_logits(x)
        fused = torch.cat(parts, dim=1).index_select(1, model.inverse)
        # Eq. 5-7 as written: L_all = eta L_global + (1 - eta) sum_g L_g, each a mean BCE of its own.
        local = sum(bce(z_g, y[:, idx]) for z_g, idx in zip(parts, groups, strict=True))
        return problem.eta * bce(fused, y) + (1 - problem.eta) * local

    optimizer = torch.optim.Adam(model.parameters(), lr=problem.lr, weight_decay=problem.weight_decay)
    return L.TorchStep("as published", model, L._float32_batch, _eager_step(model, loss_fn, optimizer),
                       "torch.optim.Adam (default: single-tensor on CPU)")


def weighted_loss(problem: HmtProblem):
    """``loss(logits, y)``: hmljax's one pass, the mean over rows and classes of BCE times the class weight."""
    w_C = torch.as_tensor(problem.class_weight_C)

    def loss(z_BxC, y_BxC):
        return (F.binary_cross_entropy_with_logits(z_BxC, y_BxC, reduction="none") * w_C).mean()

    return loss


def same_algorithm(problem: HmtProblem, params, *, dropout: float) -> L.TorchStep:
    model = _network(problem, params, dropout)
    loss = weighted_loss(problem)
    optimizer, impl = L._fast_adam(model.parameters(), problem)
    return L.TorchStep("same algorithm", model, L._float32_batch,
                       _eager_step(model, lambda m, x, y: loss(m(x), y), optimizer),
                       f"torch.optim.Adam({impl}=True)")


def best_effort(problem: HmtProblem, params, *, dropout: float, x_np, y_np) -> L.TorchStep:
    return L.compiled_step(_network(problem, params, dropout), problem, weighted_loss(problem), x_np, y_np)


def build(level: str, problem: HmtProblem, params, *, dropout: float, x_np, y_np, members: int = 0) -> L.TorchStep:
    """The level's step from hmljax's HMT-Net ``params``; dropout 0 also turns the group noise off."""
    if members:
        raise ValueError("HMT-Net's benchmark trains one network (members=0)")
    return L.pick_level(level, {
        "as published": lambda: as_published(problem, params, dropout=dropout),
        "same algorithm": lambda: same_algorithm(problem, params, dropout=dropout),
        "best effort": lambda: best_effort(problem, params, dropout=dropout, x_np=x_np, y_np=y_np),
    })
