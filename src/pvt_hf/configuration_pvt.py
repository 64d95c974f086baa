"""PvtConfig: one configuration for PVT v1, PVT v2 and every step between them.

This file is also shipped as remote code next to saved models, so it imports nothing from `pvt_hf`
by absolute name and needs only torch/transformers.
"""

import json
from pathlib import Path

from transformers.backbone_utils import BackboneConfigMixin
from transformers.configuration_utils import PreTrainedConfig

_PER_STAGE_FIELDS = ("patch_sizes", "hidden_sizes", "num_attention_heads", "sr_ratios", "mlp_ratios")
# (v1, v2) of each layout switch (v2 paper Table 6 and the two classification heads) and of the conv initialisation,
# as each version's official code has them.
_V1_V2 = dict(
    overlapping_patch_embed=(False, True),
    conv_ffn=(False, True),
    linear_sra=(False, False),
    absolute_pos_embed=(True, False),
    pooling=("cls", "mean"),
    stage_norms=(False, True),
    conv_init=("default", "fan_out"),
)
# The official code's LayerNorms (v1 and v2 alike): `nn.LayerNorm(dim)`, eps 1e-5, in the patch embeddings and the
# spatial reductions; `partial(nn.LayerNorm, eps=1e-6)` in the blocks and the closing norms.
OFFICIAL_LAYER_NORM_EPS = dict(
    layer_norm_eps=1e-6, patch_embed_layer_norm_eps=1e-5, spatial_reduction_layer_norm_eps=1e-5
)
EPS_FIELDS = tuple(OFFICIAL_LAYER_NORM_EPS)
LAYOUT_SWITCHES = tuple(k for k in _V1_V2 if k != "conv_init")
# The fields that decide a trunk's tensors and what it computes (not its initialisation, dropout or input size, nor
# the norms' eps: a folder saved before the eps fields existed holds the same tensors as today's preset).
ARCHITECTURE_FIELDS = (
    "num_channels",
    "depths",
    *_PER_STAGE_FIELDS,
    *LAYOUT_SWITCHES,
    "qkv_bias",
    "hidden_act",
)
_BOOLEANS = (*(k for k in LAYOUT_SWITCHES if k != "pooling"), "qkv_bias")
CONV_INITS = ("fan_out", "default")
_RATES = ("hidden_dropout_prob", "attention_probs_dropout_prob", "drop_path_rate")

_STAGES = dict(
    patch_sizes=[4, 2, 2, 2],
    hidden_sizes=[64, 128, 320, 512],
    num_attention_heads=[1, 2, 5, 8],
    sr_ratios=[8, 4, 2, 1],
    mlp_ratios=[8, 8, 4, 4],
    **OFFICIAL_LAYER_NORM_EPS,
)
_V1 = dict(_STAGES, **{k: v1 for k, (v1, _) in _V1_V2.items()})
_V2 = dict(_STAGES, **{k: v2 for k, (_, v2) in _V1_V2.items()})

# The 11 published variants (v1 paper Table 1, v2 paper Table 1, official code where they differ:
# pvt-v2-b5 uses MLP ratio 4 in every stage although the v2 table prints 8, 8, 4, 4).
PRESETS = {
    "pvt-tiny": dict(_V1, depths=[2, 2, 2, 2]),
    "pvt-small": dict(_V1, depths=[3, 4, 6, 3]),
    "pvt-medium": dict(_V1, depths=[3, 4, 18, 3]),
    "pvt-large": dict(_V1, depths=[3, 8, 27, 3]),
    "pvt-v2-b0": dict(_V2, depths=[2, 2, 2, 2], hidden_sizes=[32, 64, 160, 256]),
    "pvt-v2-b1": dict(_V2, depths=[2, 2, 2, 2]),
    "pvt-v2-b2": dict(_V2, depths=[3, 4, 6, 3]),
    "pvt-v2-b2-li": dict(_V2, depths=[3, 4, 6, 3], linear_sra=True),
    "pvt-v2-b3": dict(_V2, depths=[3, 4, 18, 3]),
    "pvt-v2-b4": dict(_V2, depths=[3, 8, 27, 3]),
    "pvt-v2-b5": dict(_V2, depths=[3, 6, 40, 3], mlp_ratios=[4, 4, 4, 4]),
}


def shipped_labels(file_name: str) -> dict[int, str]:
    """A class-name list shipped next to this file (`imagenet_1k_labels.json`, ...), as an `id2label` dict."""
    return dict(enumerate(json.loads(Path(__file__).with_name(file_name).read_text())))


def label_fields(id2label: dict[int, str]) -> dict:
    """The config fields of a head over `id2label` (transformers' config leaves `label2id` unset when given
    `id2label` alone)."""
    return {"id2label": id2label, "label2id": {name: i for i, name in id2label.items()}}


def with_default_labels(overrides: dict, labels) -> dict:
    """A preset's keyword arguments: the classes `labels()` gives (the preset's dataset's) unless the caller chose
    labels. They are read only then: remote code next to a saved model has no label files."""
    if "num_labels" in overrides or "id2label" in overrides:
        return overrides
    return {**label_fields(labels()), **overrides}


def imagenet_1k_labels() -> dict[int, str]:
    """The 1000 ImageNet-1k class names shipped with the package, as an `id2label` dict."""
    return shipped_labels("imagenet_1k_labels.json")


class PvtConfig(BackboneConfigMixin, PreTrainedConfig):
    r"""
    Configuration of a Pyramid Vision Transformer (v1, v2, or any mix of the designs the v2 paper ablates).

    Per-stage lists follow the papers' tables (index i is stage i + 1):

    depths (`list[int]`): L_i, number of Transformer blocks.
    patch_sizes (`list[int]`): P_i (v1) / S_i (v2), the stride of stage i's patch embedding.
    hidden_sizes (`list[int]`): C_i, channels.
    num_attention_heads (`list[int]`): N_i, heads.
    sr_ratios (`list[int]`): R_i, spatial-reduction ratio of SRA (ignored with `linear_sra`).
    mlp_ratios (`list[float]`): E_i, MLP expansion ratio.

    Switches (v2 paper, Table 6, and the v1 / v2 heads):

    overlapping_patch_embed (`bool`): OPE, a conv with kernel 2S-1 and padding S-1 instead of kernel = stride = P.
    conv_ffn (`bool`): CFFN, a 3x3 depth-wise conv between fc1 and the activation.
    linear_sra (`bool`): linear SRA, keys/values from a 7x7 adaptive average pool instead of an R x R strided conv
        (the official -li code also adds a ReLU after fc1).
    absolute_pos_embed (`bool`): v1's learned position embeddings, sized for `image_size` and bilinearly
        interpolated to other grids.
    pooling (`str`): `"cls"` (v1: a class token joins stage 4) or `"mean"` (v2: mean of the last stage's tokens).
    stage_norms (`bool`): v2 layout, a LayerNorm closing every stage; `False` is v1's layout, one LayerNorm after
        stage 4 used by the classifier only.

    conv_init (`str`): how convolutions are initialised (not architecture: a switch apart so that a Table-6 ablation
        changes one thing): `"fan_out"` as v2's code, normal(0, sqrt(2 / fan_out)) and zero bias; `"default"` as
        v1's code, PyTorch's default. Unset (a config.json written before the field existed), it follows
        `stage_norms`, which used to decide it.

    layer_norm_eps (`float`): eps of the blocks' LayerNorms and the closing ones (v2's stage norms, v1's final norm).
    patch_embed_layer_norm_eps, spatial_reduction_layer_norm_eps (`float`): eps of the patch embeddings' LayerNorms
        and of the spatial reductions' (SRA, linear SRA). The official code has 1e-5 there and 1e-6 in the blocks; the
        presets and converted checkpoints carry those values. Unset (a config.json written before these fields
        existed, when one eps served every norm), they equal `layer_norm_eps`, so a saved model computes as before.

    image_size (`int`): input size the position embeddings are sized for.
    hidden_dropout_prob, attention_probs_dropout_prob, drop_path_rate: dropout after the position embedding and in the
        MLP / attention output, attention-probability dropout, stochastic-depth rate (linear over all blocks).
    """

    model_type = "pvt_hf"

    num_channels: int = 3
    image_size: int = 224
    depths: list[int] | tuple[int, ...] = (2, 2, 2, 2)
    patch_sizes: list[int] | tuple[int, ...] = (4, 2, 2, 2)
    hidden_sizes: list[int] | tuple[int, ...] = (32, 64, 160, 256)
    num_attention_heads: list[int] | tuple[int, ...] = (1, 2, 5, 8)
    sr_ratios: list[int] | tuple[int, ...] = (8, 4, 2, 1)
    mlp_ratios: list[float] | tuple[float, ...] = (8, 8, 4, 4)
    overlapping_patch_embed: bool = True
    conv_ffn: bool = True
    linear_sra: bool = False
    absolute_pos_embed: bool = False
    pooling: str = "mean"
    stage_norms: bool = True
    conv_init: str | None = None
    qkv_bias: bool = True
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    drop_path_rate: float = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-6
    patch_embed_layer_norm_eps: float | None = None
    spatial_reduction_layer_norm_eps: float | None = None
    _out_features: list[str] | None = None
    _out_indices: list[int] | None = None

    def __post_init__(self, **kwargs):
        for name in ("depths", *_PER_STAGE_FIELDS):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or not value:
                raise ValueError(f"PvtConfig.{name} must be a non-empty list, got {value!r}")
            setattr(self, name, list(value))
        num_stages = len(self.depths)
        for name in _PER_STAGE_FIELDS:
            if len(getattr(self, name)) != num_stages:
                raise ValueError(
                    f"PvtConfig.{name} has {len(getattr(self, name))} entries but depths has {num_stages} stages: "
                    "every per-stage list needs one entry per stage"
                )
        for name in ("depths", "patch_sizes", "hidden_sizes", "num_attention_heads", "sr_ratios"):
            if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in getattr(self, name)):
                raise ValueError(f"PvtConfig.{name} must hold positive integers, got {getattr(self, name)}")
        if any(not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0 for v in self.mlp_ratios):
            raise ValueError(f"PvtConfig.mlp_ratios must hold positive numbers, got {self.mlp_ratios}")
        for i, (size, ratio) in enumerate(zip(self.hidden_sizes, self.mlp_ratios, strict=True)):
            if int(size * ratio) < 1:
                raise ValueError(
                    f"PvtConfig.mlp_ratios[{i}] = {ratio} gives stage {i + 1} an MLP of int({size} * {ratio}) = 0 "
                    "channels: the ratio times hidden_sizes must be at least 1"
                )
        # a hand-edited config.json may hold "false" (a truthy string) or 0: refuse anything but a JSON boolean
        for name in _BOOLEANS:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"PvtConfig.{name} must be true or false (a boolean), got {getattr(self, name)!r}")
        for name in ("patch_embed_layer_norm_eps", "spatial_reduction_layer_norm_eps"):  # a config.json of one eps
            if getattr(self, name) is None:
                setattr(self, name, self.layer_norm_eps)
        for name in (*_RATES, "initializer_range", *EPS_FIELDS):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"PvtConfig.{name} must be a number, got {value!r}")
        for i, (size, heads) in enumerate(zip(self.hidden_sizes, self.num_attention_heads, strict=True)):
            if size % heads:
                raise ValueError(
                    f"PvtConfig.hidden_sizes[{i}] = {size} is not divisible by num_attention_heads[{i}] = {heads}"
                )
        if self.conv_init is None:
            self.conv_init = "fan_out" if self.stage_norms else "default"
        if self.conv_init not in CONV_INITS:
            raise ValueError(f"PvtConfig.conv_init must be one of {CONV_INITS}, got {self.conv_init!r}")
        if self.pooling not in ("cls", "mean"):
            raise ValueError(f"PvtConfig.pooling must be 'cls' or 'mean', got {self.pooling!r}")
        if self.pooling == "cls" and (self.sr_ratios[-1] != 1 or self.linear_sra or self.conv_ffn):
            raise ValueError(
                "PvtConfig.pooling='cls' puts a class token among the last stage's tokens, which then have no 2-D "
                "layout: it needs sr_ratios[-1] == 1, linear_sra=False and conv_ffn=False (use pooling='mean')"
            )
        if self.absolute_pos_embed and (not isinstance(self.image_size, int) or self.image_size % self.total_stride):
            raise ValueError(
                f"PvtConfig.image_size = {self.image_size!r} must be a multiple of the total stride "
                f"{self.total_stride} when absolute_pos_embed=True"
            )
        for name in ("num_channels", "image_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"PvtConfig.{name} must be a positive integer, got {value!r}")
        for name in _RATES:
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"PvtConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        self.stage_names = [f"stage{i}" for i in range(1, num_stages + 1)]
        self.set_output_features_output_indices(
            out_indices=kwargs.pop("out_indices", None), out_features=kwargs.pop("out_features", None)
        )
        super().__post_init__(**kwargs)

    @property
    def total_stride(self) -> int:
        stride = 1
        for p in self.patch_sizes:
            stride *= p
        return stride

    @property
    def min_input_size(self) -> int:
        """The smallest input side every stage can take: its grid must hold at least one patch, and one
        spatial-reduction window where SRA reduces (R_i x R_i strided conv)."""
        size, stride = 1, 1
        for patch, ratio in zip(self.patch_sizes, self.sr_ratios, strict=True):
            stride *= patch
            size = max(size, stride * (1 if self.linear_sra else ratio))
        return size

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "PvtConfig":
        """A published variant (`pvt-tiny` ... `pvt-large`, `pvt-v2-b0` ... `pvt-v2-b5`, `pvt-v2-b2-li`) with an
        ImageNet-1k head, any field overridden by keyword (e.g. `overlapping_patch_embed=True` for Table 6 row 2)."""
        if name not in PRESETS:
            raise ValueError(f"Unknown PVT preset {name!r}; valid presets: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **with_default_labels(overrides, imagenet_1k_labels)})


__all__ = ["OFFICIAL_LAYER_NORM_EPS", "PRESETS", "PvtConfig", "imagenet_1k_labels"]
