"""Flax Linen models and ensemble forwards; no training logic."""

from hmljax.models._c2ae import C2ae
from hmljax.models._dela import Dela, dela_kl, gumbel_sigmoid_hard
from hmljax.models._encoders import (
    BACKBONES,
    count_params,
    encoder_variables_from_torch,
    image_encoder,
    load_encoder_npz,
    save_encoder_npz,
)
from hmljax.models._ensemble import (
    Forward,
    SharedEncoderHeads,
    heads_forward,
    init_stacked,
    single_forward,
    stacked_forward,
)
from hmljax.models._group_heads import GroupHeadsNet
from hmljax.models._lstm import LOCAL_INITS, LevelLSTM, local_kernel_init, lstm_over_levels
from hmljax.models._mlp import ChmcnnMLP, torch_linear_init
from hmljax.models._mpvae import (
    Mpvae,
    gaussian_kl,
    log_probit,
    probit_log_likelihood,
    probit_marginal,
    probit_scores,
)
from hmljax.models._resnet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RESNET_DEPTHS,
    ResNet,
    ResNetEncoder,
    load_resnet_npz,
    resnet_encoder,
    resnet_frozen_mask,
    resnet_variables_from_torch,
    save_resnet_npz,
)
from hmljax.models._vit import (
    VIT_VARIANTS,
    VisionTransformer,
    ViTConfig,
    ViTEncoder,
    vit_config,
    vit_encoder,
    vit_variables_from_torch,
)

__all__ = ["GroupHeadsNet", "C2ae", "Dela", "dela_kl", "gumbel_sigmoid_hard", "LevelLSTM", "lstm_over_levels",
           "LOCAL_INITS", "local_kernel_init", "ChmcnnMLP", "torch_linear_init", "Forward", "SharedEncoderHeads",
           "heads_forward",
           "init_stacked", "single_forward", "stacked_forward", "IMAGENET_MEAN", "IMAGENET_STD", "RESNET_DEPTHS",
           "ResNet", "ResNetEncoder", "load_resnet_npz", "resnet_encoder", "resnet_frozen_mask",
           "resnet_variables_from_torch", "save_resnet_npz",
           "BACKBONES", "count_params", "encoder_variables_from_torch", "image_encoder", "load_encoder_npz",
           "save_encoder_npz", "VIT_VARIANTS", "VisionTransformer", "ViTConfig", "ViTEncoder", "vit_config",
           "vit_encoder", "vit_variables_from_torch",
           "Mpvae", "gaussian_kl", "log_probit", "probit_log_likelihood", "probit_marginal", "probit_scores"]
