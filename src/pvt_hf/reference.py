"""Independent implementations holding pvt_hf's weights and computing what the official code computes: timm's
``pvt_v2`` (a port of the official v2 code; it needs torchvision) and transformers' own PVT (v1 `Pvt*`, v2 `PvtV2*`)
with each LayerNorm's eps set as the official code has it. The converter's ``--verify`` (`verify_against_reference`,
here), the equivalence and fidelity tests and the benchmarks compare pvt_hf with these.

Weights travel through the official key names (`pvt_hf.conversion`), so every implementation holds the same numbers.
`TensorOutputs` turns any of them, or a pvt_hf model, into ``pixel_values -> tuple of tensors``.
"""

import copy
import math

import torch
from torch import nn

from . import conversion
from .configuration_pvt import LAYOUT_SWITCHES, PRESETS, PvtConfig
from .modeling_pvt import PvtForImageClassification

# The official code (classification/pvt.py, pvt_v2.py and the detection / segmentation copies) builds the patch
# embeddings' and the spatial reductions' LayerNorms as `nn.LayerNorm(dim)`, PyTorch's eps, and the blocks' and closing
# ones with `partial(nn.LayerNorm, eps=1e-6)`. Stated here apart from pvt_hf's presets, which the references check.
OFFICIAL_BLOCK_EPS, OFFICIAL_EMBEDDING_AND_REDUCTION_EPS = 1e-6, 1e-5


class TensorOutputs(nn.Module):
    """`model` as ``pixel_values -> tuple of tensors``: `pick` takes them out of the model's output, so that
    exporters, timing loops and output checks treat every implementation alike. `call_kwargs` go to every call."""

    def __init__(self, model: nn.Module, pick, **call_kwargs):
        super().__init__()
        self.model, self.pick, self.call_kwargs = model, pick, call_kwargs

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.pick(self.model(pixel_values, **self.call_kwargs))


def logits(out) -> tuple[torch.Tensor]:
    return (out.logits,)


def feature_maps(out) -> tuple[torch.Tensor, ...]:
    return tuple(out.feature_maps)


def last_hidden_state(out) -> tuple[torch.Tensor]:
    return (out.last_hidden_state,)


def pvt_hf_outputs(model: nn.Module) -> TensorOutputs:
    """A `PvtForImageClassification` (logits) or `PvtBackbone` (feature maps) as plain tensors, whatever its
    config's `return_dict`."""
    return TensorOutputs(
        model, logits if isinstance(model, PvtForImageClassification) else feature_maps, return_dict=True
    )


# ------------------------------------------------------------------------------------------------- transformers


def transformers_reference(config: PvtConfig, task: str = "classification") -> nn.Module | None:
    """transformers' own implementation (v1: `Pvt*`, v2: `PvtV2*`) with `config`'s layout and random weights, or None
    where transformers cannot express `config` (the v2 paper's intermediate ablations). Its LayerNorms have the
    official code's eps, whatever `config` says: transformers' one `layer_norm_eps` (1e-6) is set to 1e-5 in the patch
    embeddings and the spatial reductions, so the model computes what the official code does."""
    import transformers

    shared = ("depths", "hidden_sizes", "num_attention_heads", "mlp_ratios", "num_labels", "qkv_bias")
    common = {k: getattr(config, k) for k in shared} | {"layer_norm_eps": OFFICIAL_BLOCK_EPS}
    # transformers has v1 and v2 (with or without linear SRA), none of the Table-6 steps between them
    switches = [k for k in LAYOUT_SWITCHES if k != "linear_sra"]
    if all(getattr(config, k) == PRESETS["pvt-tiny"][k] for k in LAYOUT_SWITCHES):
        reference_config = transformers.PvtConfig(
            **common,
            patch_sizes=config.patch_sizes,
            strides=config.patch_sizes,
            sequence_reduction_ratios=config.sr_ratios,
            image_size=config.image_size,
        )
        model_class = transformers.PvtModel if task == "backbone" else transformers.PvtForImageClassification
    elif all(getattr(config, k) == PRESETS["pvt-v2-b0"][k] for k in switches):
        reference_config = transformers.PvtV2Config(
            **common,
            patch_sizes=[2 * p - 1 for p in config.patch_sizes],
            strides=config.patch_sizes,
            sr_ratios=config.sr_ratios,
            linear_attention=config.linear_sra,
            out_features=config.stage_names,
        )
        model_class = transformers.PvtV2Backbone if task == "backbone" else transformers.PvtV2ForImageClassification
    else:
        return None
    model = model_class(reference_config).eval()
    for module in model.modules():
        if type(module).__name__ in _EMBEDDING_AND_REDUCTION_MODULES and hasattr(module, "layer_norm"):
            module.layer_norm.eps = OFFICIAL_EMBEDDING_AND_REDUCTION_EPS
    return model


# transformers' modules holding the LayerNorm of a patch embedding or of a spatial reduction (as `layer_norm`)
_EMBEDDING_AND_REDUCTION_MODULES = (
    "PvtPatchEmbeddings",
    "PvtEfficientSelfAttention",
    "PvtV2OverlapPatchEmbeddings",
    "PvtV2SelfAttention",
)


def load_into_transformers(reference: nn.Module, official: dict[str, torch.Tensor]) -> None:
    """Load official-layout weights into a model from `transformers_reference`. A v1 backbone checkpoint has no
    class token and final norm: transformers' v1 model then keeps its own, which no stage 1-3 output depends on."""
    v1 = type(reference).__name__ in ("PvtModel", "PvtForImageClassification")
    weights = conversion.official_to_transformers(official, v1=v1)
    head = {k.removeprefix("classifier."): v for k, v in weights.items() if k.startswith("classifier.")}
    body = {k: v for k, v in weights.items() if not k.startswith("classifier.")}
    if hasattr(reference, "classifier"):
        reference.classifier.load_state_dict(head)
        reference = reference.base_model
    missing, unexpected = reference.load_state_dict(body, strict=False)
    allowed = {"encoder.patch_embeddings.3.cls_token", "encoder.layer_norm.weight", "encoder.layer_norm.bias"}
    if unexpected or (set(missing) - allowed if v1 else missing):
        raise conversion.ConversionError(
            f"transformers' reference does not fit the weights: missing {missing}, unexpected {unexpected}"
        )


def give_transformers_v1_tables(reference: nn.Module, config: PvtConfig, height: int, width: int) -> None:
    """transformers' v1 reshapes its 224-sized position tables with the *target* grid, so it crashes (or scrambles
    positions) at any other input size. Give `reference` (any transformers v1 model) tables already interpolated to the
    grids of a `height` x `width` input by the official dense-prediction formula (`_get_pos_embed`): its own
    interpolation is then the identity and the rest of its forward runs unchanged, a genuine reference."""
    model = reference.base_model if hasattr(reference, "base_model") else reference
    stride = 1
    with torch.no_grad():
        for embeddings, patch_size in zip(model.encoder.patch_embeddings, config.patch_sizes, strict=True):
            stride *= patch_size
            table = embeddings.position_embeddings.data
            prefix = 1 if embeddings.cls_token is not None else 0
            grid = round((table.shape[1] - prefix) ** 0.5)
            grid_map = table[:, prefix:].reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
            resized = torch.nn.functional.interpolate(
                grid_map, size=(height // stride, width // stride), mode="bilinear"
            )
            resized = resized.flatten(2).transpose(1, 2)
            embeddings.position_embeddings = torch.nn.Parameter(torch.cat([table[:, :prefix], resized], dim=1))


def transformers_v1_stage_maps(
    reference: nn.Module, pixel_values: torch.Tensor, config: PvtConfig
) -> list[torch.Tensor]:
    """The feature maps of stages 1-3 of a transformers v1 model, read off its per-block hidden states: transformers
    has no v1 backbone, and its stage 4 always runs the class token, so has no dense-prediction counterpart."""
    blocks = reference(pixel_values, output_hidden_states=True).hidden_states
    maps, end, stride = [], -1, 1
    for depth, patch_size in zip(config.depths[:3], config.patch_sizes[:3], strict=True):
        end, stride = end + depth, stride * patch_size
        height, width = pixel_values.shape[-2] // stride, pixel_values.shape[-1] // stride
        maps.append(blocks[end].transpose(1, 2).reshape(len(pixel_values), -1, height, width))
    return maps


def transformers_outputs(config: PvtConfig, official: dict, task: str, height: int, width: int) -> TensorOutputs:
    """transformers' model holding `official` weights, ready for `height` x `width` inputs: its classifier (logits),
    or for the backbone path its PvtV2Backbone (v2; feature maps) and PvtModel (v1: transformers has no v1 backbone;
    its PvtModel also runs the class token and final LayerNorm; last hidden state)."""
    reference = transformers_reference(config, task)
    load_into_transformers(reference, official)
    if config.absolute_pos_embed and (height, width) != (config.image_size, config.image_size):
        give_transformers_v1_tables(reference, config, height, width)
    if task == "classification":
        return TensorOutputs(reference, logits)
    return TensorOutputs(reference, last_hidden_state if config.absolute_pos_embed else feature_maps)


# --------------------------------------------------------------------------------------------------------- timm


def timm_reference(config: PvtConfig, official: dict[str, torch.Tensor]) -> nn.Module:
    """timm's ``PyramidVisionTransformerV2`` (the class of its ``pvt_v2_*`` models) with `config`'s depths, widths,
    heads and ratios, holding `official` weights. Raises ImportError where timm does not import (it needs
    torchvision), `ConversionError` (a ValueError) for what timm cannot express: v1, the v2 paper's ablations, other
    patch sizes or activations."""
    try:
        from timm.models.pvt_v2 import PyramidVisionTransformerV2
    except Exception as error:  # absent, or broken by its torchvision dependency
        raise ImportError(f"timm does not import: {type(error).__name__}: {error}") from error

    v2 = PRESETS["pvt-v2-b0"]
    if (
        any(getattr(config, k) != v2[k] for k in LAYOUT_SWITCHES if k != "linear_sra")
        or config.patch_sizes != [4] + [2] * (len(config.depths) - 1)
        or config.hidden_act != "gelu"
    ):
        raise conversion.ConversionError(
            "timm's pvt_v2 has PVT v2's layout only (patch sizes 4, 2, 2, ..., GELU, with or without linear SRA)"
        )
    model = PyramidVisionTransformerV2(
        in_chans=config.num_channels,
        num_classes=config.num_labels if "head.weight" in official else 0,  # a backbone's weights have no head
        depths=tuple(config.depths),
        embed_dims=tuple(config.hidden_sizes),
        num_heads=tuple(config.num_attention_heads),
        sr_ratios=tuple(config.sr_ratios),
        mlp_ratios=tuple(config.mlp_ratios),
        qkv_bias=config.qkv_bias,
        linear=config.linear_sra,
    ).to(next(iter(official.values())).dtype)  # the weights' own precision (float64 in the equivalence tests)
    model.load_state_dict(conversion.TIMM_TO_OFFICIAL.apply(official, reverse=True)[0])
    return model.eval()


class _TimmFeatureMaps(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        return self.model.forward_intermediates(pixel_values, intermediates_only=True)


def timm_outputs(config: PvtConfig, official: dict, task: str) -> TensorOutputs:
    """timm's model holding `official` weights: logits, or the four stage maps (`forward_intermediates`)."""
    model = timm_reference(config, official)
    if task == "classification":
        return TensorOutputs(model, lambda out: (out,))
    return TensorOutputs(_TimmFeatureMaps(model).eval(), tuple)


# ------------------------------------------------------------------------------------------------------ --verify


def independent_reference(config: PvtConfig, official: dict[str, torch.Tensor], task: str) -> tuple[nn.Module, str]:
    """An implementation holding `official` weights that computes what the official code computes, and its name:
    timm's pvt_v2 for the PVT v2 layouts it expresses, where timm imports (backbone task: its four stage maps),
    otherwise transformers' own PVT with the official LayerNorm eps (its backbone returns `feature_maps`)."""
    try:
        model = timm_reference(config, official)
    except (ImportError, ValueError):  # timm absent (never required at run time) or not this layout
        pass
    else:
        return (model if task == "classification" else _TimmFeatureMaps(model).eval()), "timm"
    reference = transformers_reference(config, task)
    if reference is None:
        raise conversion.ConversionError(
            "transformers cannot express this configuration, so there is nothing to verify against"
        )
    load_into_transformers(reference, official)
    return reference, "transformers (official LayerNorm eps)"


def relative_difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected|, the relative max-abs difference of two outputs; infinite if either
    holds a NaN or an infinity (a NaN would vanish in Python's max) or `expected` is all zeros."""
    difference, scale = max_abs_difference(actual, expected), expected.abs().max().item()
    return difference / scale if math.isfinite(difference) and scale > 0 else math.inf


def verify_against_reference(
    model: torch.nn.Module, official: dict[str, torch.Tensor], task: str, seed: int = 0
) -> tuple[float, str]:
    """Run `model` and an independent implementation of the official code holding the same weights (timm's pvt_v2
    where it imports and expresses the layout, else transformers' own PVT with the official LayerNorm eps), both in
    float64 so that only rounding separates them, on the same random inputs; returns the largest relative max-abs
    difference of their outputs and the reference's name. transformers' v1 reshapes its position tables with the target
    grid, so off 224 it is handed tables interpolated by the official formula; its stage 4 always runs the class
    token, so a v1 backbone is compared on stages 1-3."""
    config = model.config
    reference, name = independent_reference(config, official, task)
    model, reference = copy.deepcopy(model).double().eval(), reference.double()
    v1 = config.absolute_pos_embed
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for height, width in [(224, 224), (256, 320)]:
        if v1 and (height, width) != (config.image_size, config.image_size):
            give_transformers_v1_tables(reference, config, height, width)
        # one image: float64 has no fast CPU kernels, and rounding-level agreement needs no batch statistics
        pixels = torch.randn(1, config.num_channels, height, width, generator=generator, dtype=torch.float64)
        with torch.no_grad():
            if task == "classification":
                ours, theirs = [model(pixels).logits], [_logits(reference, pixels)]
            elif v1:
                ours = list(model(pixels, output_hidden_states=True).hidden_states[:3])
                theirs = transformers_v1_stage_maps(reference, pixels, config)
            else:
                ours = list(model(pixels, output_hidden_states=True).hidden_states)
                out = reference(pixels)
                theirs = list(out.feature_maps if hasattr(out, "feature_maps") else out)
        worst = max([worst] + [relative_difference(a, b) for a, b in zip(ours, theirs, strict=True)])
    return worst, name


def max_abs_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b|, infinite if either holds a NaN or an infinity (a NaN difference would vanish in Python's max)."""
    if not (a.isfinite().all() and b.isfinite().all()):
        return float("inf")
    return (a - b).abs().max().item()


def _logits(reference, pixels):
    out = reference(pixels)
    return out.logits if hasattr(out, "logits") else out


__all__ = [
    "TensorOutputs",
    "feature_maps",
    "give_transformers_v1_tables",
    "independent_reference",
    "last_hidden_state",
    "load_into_transformers",
    "logits",
    "max_abs_difference",
    "pvt_hf_outputs",
    "relative_difference",
    "timm_outputs",
    "timm_reference",
    "transformers_outputs",
    "transformers_reference",
    "transformers_v1_stage_maps",
    "verify_against_reference",
]
