"""State-dict conversion into pvt_hf, with strict accounting: a checkpoint of any source layout (`key_maps`) becomes a
complete, correctly shaped model state dict and its config (the variant inferred from the tensors, a contradicting
preset refused), or a `ConversionError` listing what would stay unfilled or misshaped. The converter's `--verify`
(`reference.verify_against_reference`) compares the result with independent implementations.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers.configuration_utils import PreTrainedConfig

from .configuration_pvt import LAYOUT_SWITCHES, OFFICIAL_LAYER_NORM_EPS, PRESETS, PvtConfig, label_fields
from .configuration_pvt_heads import PvtSegmentationConfig, ade20k_labels
from .key_maps import (
    SEMANTIC_FPN_HEAD,
    SOURCES,
    TIMM_TO_OFFICIAL,
    ConversionError,
    official_to_pvt_hf,
    official_to_transformers,
    pvt_hf_to_official,
    to_official,
)
from .modeling_pvt import PvtBackbone, PvtForImageClassification
from .modeling_pvt_heads import PvtForSemanticSegmentation

# the kinds of checkpoint the converter writes (a model class each); not the data tasks of `pvt_hf.data`
CHECKPOINT_KINDS = ("classification", "backbone", "semantic-fpn")

# Structural fields that a state dict determines; a preset or config contradicting them is refused.
STRUCTURE_FIELDS = ("depths", "hidden_sizes", "patch_sizes", "sr_ratios", "mlp_ratios", *LAYOUT_SWITCHES)


@dataclass
class ConversionReport:
    """What a conversion used and what it could not: nothing here may be silently dropped."""

    unused_keys: list[str] = field(default_factory=list)  # source tensors that no model parameter takes
    missing_keys: list[str] = field(default_factory=list)  # model parameters the checkpoint does not fill
    shape_mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing_keys and not self.shape_mismatches

    def summary(self) -> str:
        lines = []
        for title, keys in (
            ("model parameters not filled by the checkpoint", self.missing_keys),
            ("shape mismatches", self.shape_mismatches),
            ("checkpoint tensors left unused", self.unused_keys),
        ):
            if keys:
                lines.append(f"{len(keys)} {title}:")
                lines.extend(f"  {k}" for k in keys)
        return "\n".join(lines) or "every checkpoint tensor mapped; every model parameter filled"


def extract_state_dict(checkpoint) -> dict[str, torch.Tensor]:
    """The tensors of a raw state dict, a ``{"model": ...}`` / ``{"state_dict": ...}`` wrapper (mm* and DeiT-style
    training checkpoints), with DDP's ``module.`` prefix removed."""
    for wrapper in ("model", "state_dict", "model_state"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(wrapper), dict):
            checkpoint = checkpoint[wrapper]
            break
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise ConversionError("The checkpoint holds no state dict (expected a dict of tensors)")
    tensors = {k.removeprefix("module."): v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ConversionError("The checkpoint's state dict holds no tensors")
    return tensors


def load_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a ``.pth``/``.bin`` file, a ``.safetensors`` file, or a folder holding ``model.safetensors``
    (possibly sharded) or ``pytorch_model.bin``."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin")) or sorted(path.glob("*.pth"))
        if not files:
            raise ConversionError(f"No .safetensors, .bin or .pth weights in folder {path}")
        state_dict = {}
        for file in files:
            state_dict.update(load_checkpoint(file))
        return state_dict
    if not path.is_file():
        raise ConversionError(f"Checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as error:  # empty / truncated: safetensors' message names no file
            raise ConversionError(
                f"Cannot read checkpoint {path}: {error} (truncated or not a safetensors file?)"
            ) from error
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated or not a torch file
        raise ConversionError(f"Cannot read checkpoint {path}: {error}") from error
    return extract_state_dict(checkpoint)


def split_prefix(state_dict: dict[str, torch.Tensor], prefix: str = "backbone.") -> tuple[dict, list[str]]:
    """For mm* checkpoints: the ``backbone.`` tensors (prefix removed) and the names of everything else
    (``neck.*``, ``decode_head.*``, ``bbox_head.*`` ...). Without such a prefix, the input unchanged."""
    if not any(k.startswith(prefix) for k in state_dict):
        return state_dict, []
    inner = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    return inner, sorted(k for k in state_dict if not k.startswith(prefix))


def infer_structure(official: dict[str, torch.Tensor]) -> dict:
    """The structural config fields an official-layout state dict determines (heads are not among them)."""
    stages = sorted(int(m[1]) for k in official if (m := re.fullmatch(r"patch_embed(\d)\.proj\.weight", k)))
    if not stages or stages != list(range(1, len(stages) + 1)):
        raise ConversionError(
            f"Not a PVT checkpoint: no patch_embed1..N.proj.weight tensors found (first keys: {sorted(official)[:5]})"
        )
    hidden_sizes, patch_sizes, depths, sr_ratios, mlp_ratios = [], [], [], [], []
    kernel = official["patch_embed1.proj.weight"].shape[-1]
    overlapping = kernel % 2 == 1 and kernel > 1
    linear_sra = "block1.0.attn.sr.weight" in official and official["block1.0.attn.sr.weight"].shape[-1] == 1
    for s in stages:
        weight = official[f"patch_embed{s}.proj.weight"]
        hidden_sizes.append(weight.shape[0])
        patch_sizes.append((weight.shape[-1] + 1) // 2 if overlapping else weight.shape[-1])
        depths.append(len({m[1] for k in official if (m := re.fullmatch(rf"block{s}\.(\d+)\.norm1\.weight", k))}))
        sr = official.get(f"block{s}.0.attn.sr.weight")
        sr_ratios.append(None if linear_sra else 1 if sr is None else sr.shape[-1])
        fc1 = official.get(f"block{s}.0.mlp.fc1.weight")
        if fc1 is None:
            raise ConversionError(f"Stage {s} has no blocks (block{s}.0.mlp.fc1.weight missing): truncated checkpoint?")
        ratio = fc1.shape[0] / hidden_sizes[-1]
        mlp_ratios.append(int(ratio) if ratio == int(ratio) else ratio)
    structure = dict(
        depths=depths,
        hidden_sizes=hidden_sizes,
        patch_sizes=patch_sizes,
        sr_ratios=sr_ratios,
        mlp_ratios=mlp_ratios,
        overlapping_patch_embed=overlapping,
        conv_ffn="block1.0.mlp.dwconv.dwconv.weight" in official,
        linear_sra=linear_sra,
        absolute_pos_embed="pos_embed1" in official,
        pooling="cls" if "cls_token" in official or _has_cls_position(official, stages) else "mean",
        stage_norms="norm1.weight" in official,
    )
    if structure["absolute_pos_embed"]:
        structure["image_size"] = round(official["pos_embed1"].shape[1] ** 0.5) * patch_sizes[0]
    return structure


def _has_cls_position(official, stages):
    """A v1 backbone-only checkpoint has no cls_token, but stage 4's position table still carries its row."""
    table = official.get(f"pos_embed{stages[-1]}")
    return table is not None and round((table.shape[1] - 1) ** 0.5) ** 2 == table.shape[1] - 1


def contradictions(structure: dict, config: dict) -> list[str]:
    """The structural fields where `config` disagrees with the weights (sr_ratios do not exist under linear SRA)."""
    return [
        f"{k}: checkpoint {structure[k]} vs config {config[k]}"
        for k in STRUCTURE_FIELDS
        if structure[k] != config[k] and not (k == "sr_ratios" and structure["linear_sra"])
    ]


def preset_for(structure: dict) -> str | None:
    """The published variant a structure is, if any."""
    return next((name for name, preset in PRESETS.items() if not contradictions(structure, preset)), None)


def build_config(
    official: dict[str, torch.Tensor], preset: str | None = None, config: PvtConfig | None = None, **overrides
) -> PvtConfig:
    """A config for an official-layout state dict: the given config or preset (refused if the weights contradict
    it), or the published variant the weights are, with the official code's LayerNorm eps. Heads cannot be read off
    weights, so a structure that is no published variant needs `config` (or `num_attention_heads=` among the
    overrides)."""
    structure = infer_structure(official)
    if config is None:
        name = preset or preset_for(structure)
        if name is None and "num_attention_heads" not in overrides:
            raise ConversionError(
                f"The checkpoint is no published PVT variant ({structure}); pass a config or num_attention_heads"
            )
        if "head.weight" in official and official["head.weight"].shape[0] != 1000:
            overrides.setdefault("num_labels", official["head.weight"].shape[0])
        if name is not None:
            config = PvtConfig.from_preset(name, **overrides)
        else:
            sr_ratios = {"sr_ratios": [1] * len(structure["depths"])} if structure["linear_sra"] else {}
            config = PvtConfig(**structure | sr_ratios | OFFICIAL_LAYER_NORM_EPS | overrides)
    if found := contradictions(structure, config.to_dict()):
        raise ConversionError(
            "The checkpoint contradicts the requested configuration"
            + (f" (preset {preset!r})" if preset else "")
            + ":\n  "
            + "\n  ".join(found)
        )
    return config


def convert_state_dict(
    state_dict: dict[str, torch.Tensor],
    source: str,
    task: str = "classification",
    preset: str | None = None,
    config: PreTrainedConfig | None = None,
) -> tuple[dict[str, torch.Tensor], PreTrainedConfig, ConversionReport]:
    """Convert `state_dict` from `source` into the state dict of `PvtForImageClassification` (task
    ``classification``), `PvtBackbone` (``backbone``) or `PvtForSemanticSegmentation` (``semantic-fpn``: an official
    mmsegmentation Semantic FPN checkpoint), with its config and a full account of what was used.

    Raises `ConversionError` if any model parameter would stay unfilled or a shape does not match."""
    if task not in CHECKPOINT_KINDS:
        raise ConversionError(f"Unknown task {task!r}; expected one of {CHECKPOINT_KINDS}")
    if task == "semantic-fpn":
        return _convert_semantic_fpn(state_dict, source, preset, config)
    inner, outside = split_prefix(state_dict)
    official, unused = to_official(inner, source)
    config = build_config(official, preset=preset, config=config)
    converted, unused_official = official_to_pvt_hf(official)
    if task == "backbone":
        converted, head_keys = _backbone_part(converted)
        unused_official += head_keys
    model_class = PvtForImageClassification if task == "classification" else PvtBackbone
    return _account(converted, model_class, config, outside + unused + unused_official)


def _backbone_part(converted: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """`PvtForImageClassification` names -> `PvtBackbone` names, and the keys a backbone has no place for."""
    head_keys = [k for k in converted if not k.startswith("pvt.encoder.")]
    return {k.removeprefix("pvt."): v for k, v in converted.items() if k not in head_keys}, head_keys


def _account(converted, model_class, config, unused) -> tuple[dict, PreTrainedConfig, ConversionReport]:
    """Compare the converted tensors with what `model_class(config)` expects; fail on anything unfilled or misshaped."""
    with torch.device("meta"):
        expected = {k: v.shape for k, v in model_class(config).state_dict().items()}
    report = ConversionReport(unused_keys=sorted(unused) + sorted(k for k in converted if k not in expected))
    report.missing_keys = sorted(k for k in expected if k not in converted)
    report.shape_mismatches = [
        f"{k}: checkpoint {tuple(converted[k].shape)} vs model {tuple(shape)}"
        for k, shape in expected.items()
        if k in converted and converted[k].shape != shape
    ]
    if not report.ok:
        raise ConversionError("Conversion would leave the model incomplete:\n" + report.summary())
    return {k: v for k, v in converted.items() if k in expected}, config, report


def _convert_semantic_fpn(state_dict, source, preset, config):
    backbone_weights, others = split_prefix(state_dict)
    if not others:
        raise ConversionError("Not a Semantic FPN checkpoint: no neck.* / decode_head.* tensors beside backbone.*")
    official, unused = to_official(backbone_weights, source)
    head, unused_head = SEMANTIC_FPN_HEAD.apply({k: state_dict[k] for k in others})
    if "decode_head.classifier.weight" not in head or "neck.lateral_convs.0.conv.weight" not in head:
        raise ConversionError(
            f"Not a Semantic FPN checkpoint: no decode_head.conv_seg / neck.lateral_convs (has {others[:5]})"
        )
    if config is None:
        num_labels = head["decode_head.classifier.weight"].shape[0]
        labels = label_fields(ade20k_labels()) if num_labels == 150 else {"num_labels": num_labels}
        config = PvtSegmentationConfig(
            backbone_config=build_config(official, preset=preset, num_labels=0),
            decode_head="semantic_fpn",
            fpn_channels=head["neck.lateral_convs.0.conv.weight"].shape[0],
            hidden_size=head["decode_head.scale_heads.0.0.conv.weight"].shape[0],
            **labels,
        )
    else:
        build_config(official, config=config.backbone_config)  # refuses a contradicting backbone
    converted, head_keys = _backbone_part(official_to_pvt_hf(official)[0])
    converted = {f"backbone.{k}": v for k, v in converted.items()} | head
    return _account(converted, PvtForSemanticSegmentation, config, unused + unused_head + head_keys)


__all__ = [
    "CHECKPOINT_KINDS",
    "SOURCES",
    "TIMM_TO_OFFICIAL",
    "ConversionError",
    "ConversionReport",
    "build_config",
    "convert_state_dict",
    "extract_state_dict",
    "infer_structure",
    "load_checkpoint",
    "official_to_pvt_hf",
    "official_to_transformers",
    "preset_for",
    "pvt_hf_to_official",
    "split_prefix",
    "to_official",
]
