"""C2AE's networks (Yeh et al., AAAI 2017, "Learning Deep Latent Spaces for Multi-Label Classification"), in Flax Linen.

Shape legend: ``B`` batch, ``D`` input features, ``C`` labels, ``K`` latent width, ``H`` hidden width.

Three maps into and out of one latent space: the feature map ``F_x: x -> L``, the label encoder
``F_e: y -> L`` and the label decoder ``F_d: L -> y``. Their shapes follow the authors' released
MATLAB code (chihkuanyeh/C2AE, ``demo.m`` and ``DCCAtrain_SGD.m``): ``F_x`` is ``D -> H -> H -> K``,
``F_e`` is ``C -> H -> K`` and ``F_d`` is ``K -> H -> C``, with H = 512, leaky-ReLU (slope 0.1)
hidden layers, latent outputs ``sigmoid(.) - 0.5`` (the code's ``sigmoid_zero_mean``, which keeps the
latent codes bounded while the orthogonality penalty pulls their Gram matrix to I) and a decoder
whose output is ``sigmoid(.)``. ``F_e`` reads the 0/1 label vector (the released ``normalize.m`` maps
+-1 labels to 0/1, and would rescale 0/1 rows to ``y / |y|``, which its ranking loss then reads as having
no positive where a row has two or more; hmljax's labels are 0/1 and go in as they are). This module
returns the decoder's pre-sigmoid outputs (logits); the loss and the prediction apply the sigmoid. Every
linear layer uses PyTorch's default initialisation (U(±1 / sqrt(fan_in))), as a PyTorch reimplementation
(the adaptive-batch comparison's) would; the MATLAB code's is U(±0.01) weights and U(0, 0.1) biases for
its leaky-ReLU layers.
"""

from __future__ import annotations

import flax.linen as nn
import jax
from jaxtyping import Array, Float

from hmljax.models._mlp import torch_linear_init

__all__ = ["C2ae"]


class _Tower(nn.Module):
    """Linear layers of ``widths``; leaky ReLU (and dropout) after all but the last; no output nonlinearity."""

    widths: tuple[int, ...]
    leak: float = 0.1
    dropout: float = 0.0

    @nn.compact
    def __call__(self, h, *, train: bool):
        for k, width in enumerate(self.widths):
            f = torch_linear_init(h.shape[-1])
            h = nn.Dense(width, kernel_init=f, bias_init=f, name=f"dense_{k}")(h)
            if k < len(self.widths) - 1:
                h = nn.leaky_relu(h, self.leak)
                h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return h


class C2ae(nn.Module):
    """C2AE's ``F_x``, ``F_e`` and ``F_d``; ``__call__(x)`` is the prediction path ``F_d(F_x(x))``.

    Attributes:
        num_labels: C.
        latent: K (the released code: ``round(0.8 * C)``).
        hidden: H (512).
        leak: the leaky ReLU's negative slope (0.1).
        dropout: drop probability after each hidden layer (0: the released code uses none).
    """

    num_labels: int
    latent: int
    hidden: int = 512
    leak: float = 0.1
    dropout: float = 0.0

    def setup(self):
        kw = dict(leak=self.leak, dropout=self.dropout)
        self.fx = _Tower((self.hidden, self.hidden, self.latent), **kw)
        self.fe = _Tower((self.hidden, self.latent), **kw)
        self.fd = _Tower((self.hidden, self.num_labels), **kw)

    def encode_x(self, x: Float[Array, "B D"], *, train: bool) -> Float[Array, "B K"]:
        """``F_x(x)``: latent codes in (-0.5, 0.5)."""
        return jax.nn.sigmoid(self.fx(x, train=train)) - 0.5

    def encode_y(self, y: Float[Array, "B C"], *, train: bool) -> Float[Array, "B K"]:
        """``F_e(y)`` of 0/1 labels: latent codes in (-0.5, 0.5)."""
        return jax.nn.sigmoid(self.fe(y, train=train)) - 0.5

    def decode(self, z: Float[Array, "B K"], *, train: bool) -> Float[Array, "B C"]:
        """``F_d(z)`` before its sigmoid: logits."""
        return self.fd(z, train=train)

    def __call__(self, x: Float[Array, "B D"], *, train: bool) -> dict:
        """``{"logits": F_d(F_x(x)) [B, C], "z_x": F_x(x) [B, K]}``."""
        z_x = self.encode_x(x, train=train)
        return {"logits": self.decode(z_x, train=train), "z_x": z_x}

    def label_branch(self, y: Float[Array, "B C"], *, train: bool) -> dict:
        """``{"z_y": F_e(y) [B, K], "label_logits": F_d(F_e(y)) [B, C]}``: the label autoencoder."""
        z_y = self.encode_y(y, train=train)
        return {"z_y": z_y, "label_logits": self.decode(z_y, train=train)}

    def init_all(self, x: Float[Array, "B D"], y: Float[Array, "B C"]) -> dict:
        """Touches every submodule (for ``init``): ``F_x``, ``F_e`` and ``F_d``."""
        return {**self(x, train=False), **self.label_branch(y, train=False)}
