"""HLSTM's network: one LSTM cell unrolled over the hierarchy's levels, a local head per level, a global head.

Qi & Chelmis, "Hybrid Loss for Hierarchical Multi-label Classification Network" (HLSTM), eq. 6-13;
REFERENCE.md §3.2. The paper prints the gate input as ``A^{h-1} ⊙ x``; the shapes only work for the
concatenation ``[A^{h-1}; x]`` (Wehrmann's HMCN notation), which is what is built here. The same
``x`` enters every step, so this is ``nn.LSTM`` run over ``x`` repeated ``L`` times from zero state.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from hmljax.models._mlp import dense_layer, torch_linear_init

__all__ = ["LevelLSTM", "LOCAL_INITS", "local_kernel_init", "lstm_over_levels"]

LOCAL_INITS = ("constant", "zeros", "ones", "normal", "xavier", "he")


def local_kernel_init(kind: str, value: float = 0.1):
    """The local heads' weight initialiser (the paper: the constant 0.1; the others are its ablation, Fig. 8)."""
    if kind == "constant":
        return nn.initializers.constant(value)
    if kind == "zeros":
        return nn.initializers.zeros
    if kind == "ones":
        return nn.initializers.ones
    if kind == "normal":
        return nn.initializers.normal(stddev=1.0)
    if kind == "xavier":
        return nn.initializers.xavier_uniform()
    if kind == "he":
        return nn.initializers.he_uniform()
    raise ValueError(f"bad value for local_init: {kind!r} (one of {', '.join(LOCAL_INITS)})")


def _cell(z, c):
    """One LSTM cell from its pre-activations ``z [B, 4H]`` (gate order F, I, Ĉ, O) and ``c [B, H]``."""
    f_g, i_g, c_g, o_g = jnp.split(z, 4, axis=-1)
    sf, si, tg, so = jax.nn.sigmoid(f_g), jax.nn.sigmoid(i_g), jnp.tanh(c_g), jax.nn.sigmoid(o_g)
    c_new = sf * c + si * tg
    tc = jnp.tanh(c_new)
    return so * tc, c_new, (sf, si, tg, so, tc)


def _levels_forward(x_proj, w_a, levels: int):
    batch, hidden = x_proj.shape[0], x_proj.shape[1] // 4
    a = c = jnp.zeros((batch, hidden), x_proj.dtype)
    out, saved = [], []
    for level in range(levels):
        z = x_proj if level == 0 else x_proj + a @ w_a  # A^0 = 0: level 1 needs no recurrent product
        c_prev = c
        a, c, acts = _cell(z, c_prev)
        out.append(a)
        saved.append((c_prev, acts))
    return jnp.stack(out), saved


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def lstm_over_levels(x_proj: Float[Array, "B 4H"], w_a: Float[Array, "H 4H"], levels: int) -> Float[Array, "L B H"]:
    """Every level's hidden state ``A^h`` of an LSTM fed the same input at each of ``levels`` steps from zero state.

    ``x_proj = W_x x + b`` (the input's share of the gates, the same at every step) and ``w_a`` the recurrent
    kernel; gates in the order F, I, Ĉ, O. Differentiable in both; its VJP is plain backpropagation through
    the levels, except that ``w_a``'s gradient is one ``[H, (L-1)B] x [(L-1)B, 4H]`` product over all levels'
    states at once. Autodiff of the unrolled loop forms one ``[H, 4H]`` outer product per level and sums them:
    at batch 4 each is a rank-4 update that writes the whole kernel (4 MB at H = 500), L - 1 times a step.
    """
    return _levels_forward(x_proj, w_a, levels)[0]


def _lstm_fwd(x_proj, w_a, levels):
    out, saved = _levels_forward(x_proj, w_a, levels)
    return out, (out, saved, w_a)


def _lstm_bwd(levels, res, d_out):
    out, saved, w_a = res
    d_a = jnp.zeros_like(out[0])
    d_c = jnp.zeros_like(out[0])
    d_z = [None] * levels
    for level in reversed(range(levels)):
        c_prev, (sf, si, tg, so, tc) = saved[level]
        d_a = d_out[level] + d_a
        d_c = d_c + d_a * so * (1 - tc * tc)
        d_z[level] = jnp.concatenate([d_c * c_prev * sf * (1 - sf), d_c * tg * si * (1 - si),
                                      d_c * si * (1 - tg * tg), d_a * tc * so * (1 - so)], axis=-1)
        d_c = d_c * sf
        d_a = d_z[level] @ w_a.T if level else None
    d_x = functools.reduce(jnp.add, d_z)
    if levels == 1:
        return d_x, jnp.zeros_like(w_a)
    states = out[:-1].reshape(-1, out.shape[-1])  # A^1..A^{L-1}: the inputs of levels 2..L's products
    d_w = states.T @ jnp.concatenate(d_z[1:], axis=0)
    return d_x, d_w


lstm_over_levels.defvjp(_lstm_fwd, _lstm_bwd)


class _Kernel(nn.Module):
    """A bare weight matrix, held as ``{"kernel": [fan_in, features]}`` (an ``nn.Dense`` without bias's layout and
    initialisation, so checkpoints and initial values are those of the Dense it replaces)."""

    fan_in: int
    features: int
    kernel_init: object = nn.linear.default_kernel_init

    @nn.compact
    def __call__(self):
        return self.param("kernel", self.kernel_init, (self.fan_in, self.features), jnp.float32)


class LevelLSTM(nn.Module):
    """Global logits ``[B, C]`` and local logits ``[B, C]`` from ``x [B, D]``.

    Per level h = 1..L (eq. 6-11, one set of gate weights shared over the levels):
    ``[F; I; Ĉ; O] = W [A^{h-1}; x] + b`` (held as ``gates_a`` = W's A columns, ``gates_x`` = its x
    columns and b), ``C^h = σ(F) ⊙ C^{h-1} + σ(I) ⊙ tanh(Ĉ)``,
    ``A^h = σ(O) ⊙ tanh(C^h)``, from ``A^0 = C^0 = 0``. The local branch of level h (eq. 12) is
    ``relu(W_T^h A^h + b)`` then a linear head over the classes of level h; the global head
    (eq. 13) is linear on ``A^L`` over all C classes. Dropout acts on what the heads read (``A^h``
    and the transition's output), never on the recurrence.

    Attributes:
        hidden: the LSTM's width H.
        transition: the local transition's width.
        level_index: for each level, the node indices (into ``[0, C)``) its head predicts, as a
            tuple of tuples; nodes in no level (roots) get local logit 0.
        num_outputs: C.
        dropout: drop probability on the heads' inputs.
        local_heads: False builds no local branch (CHMC-LSTM; the local logits are then zeros).
        local_init, local_init_value: the local heads' weight initialiser (biases start at 0).
        init_scheme: the other layers: 'torch' (``nn.LSTM``/``nn.Linear``'s uniform
            ``±1/sqrt(fan)``, the paper's "uniform" global weights) or 'flax' (lecun-normal, zero bias).
    """

    hidden: int
    transition: int
    level_index: tuple[tuple[int, ...], ...]
    num_outputs: int
    dropout: float = 0.0
    local_heads: bool = True
    local_init: str = "constant"
    local_init_value: float = 0.1
    init_scheme: str = "torch"

    def _dense(self, width: int, fan_in: int, name: str) -> nn.Dense:
        return dense_layer(width, fan_in, scheme=self.init_scheme, name=name)

    @nn.compact
    def __call__(self, x: Float[Array, "B D"], *, train: bool) -> tuple[Float[Array, "B C"], dict]:
        if self.init_scheme not in ("torch", "flax"):
            raise ValueError(f"init must be 'torch' or 'flax', got {self.init_scheme!r}")
        H = self.hidden
        batch = x.shape[0]
        drop = nn.Dropout(self.dropout, deterministic=not train)
        # W [A; x] + b = W_a A + (W_x x + b): the same x enters every level, so its projection is
        # computed once, and level 1 (A^0 = 0) needs no recurrent product. A Dense holds (W_x, b) and a
        # bare kernel W_a (a bias-free Dense's layout); a step is memory-bound on reading W, so this saves
        # real time at batch 4, as does lstm_over_levels's single product for W_a's gradient.
        if self.init_scheme == "torch":  # nn.LSTM: every weight and bias uniform(±1/sqrt(H))
            f = torch_linear_init(H)
            gates_x = nn.Dense(4 * H, kernel_init=f, bias_init=f, name="gates_x")
            w_a = _Kernel(H, 4 * H, kernel_init=f, name="gates_a")()
        else:
            gates_x = nn.Dense(4 * H, name="gates_x")
            w_a = _Kernel(H, 4 * H, name="gates_a")()
        kernel_local = local_kernel_init(self.local_init, self.local_init_value)
        states = lstm_over_levels(gates_x(x), w_a.astype(x.dtype), len(self.level_index))
        local_parts = []
        for level, nodes in enumerate(self.level_index):  # L is small and static: unrolled
            a = states[level]
            if self.local_heads:
                t = nn.relu(self._dense(self.transition, H, f"transition_{level}")(drop(a)))
                head = nn.Dense(len(nodes), kernel_init=kernel_local, name=f"local_{level}")
                local_parts.append(head(drop(t)))
        global_logits = self._dense(self.num_outputs, H, "global")(drop(a))
        local = jnp.zeros((batch, self.num_outputs), global_logits.dtype)
        if self.local_heads:
            index = jnp.asarray([j for nodes in self.level_index for j in nodes], jnp.int32)
            local = local.at[:, index].set(jnp.concatenate(local_parts, axis=-1))
        return global_logits, {"local_logits": local}
