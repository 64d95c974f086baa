"""State-dict conversion into pvt_hf, with strict accounting.

Every source layout is first renamed to the official PVT repository's key names (the lingua franca of all published
weights), then one table maps official names to pvt_hf's. Sources:

- ``official``: the official repository's classification checkpoints (``pvt_small.pth``, ``pvt_v2_b2.pth`` ...) and
  its mmdetection / mmsegmentation checkpoints (``backbone.`` prefix, ``neck.*`` / ``decode_head.*`` beside it);
- ``timm``: timm's ``pvt_v2_*`` weights;
- ``transformers``: transformers' own ``PvtForImageClassification`` / ``PvtModel`` (v1) and ``PvtV2*`` (v2).
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .configuration_pvt import PRESETS, PvtConfig
from .modeling_pvt import PvtBackbone, PvtForImageClassification


SOURCES = ("official", "timm", "transformers")
TASKS = ("classification", "backbone")

# Structural fields that a state dict determines; a preset or config contradicting them is refused.
STRUCTURE_FIELDS = (
    "depths",
    "hidden_sizes",
    "patch_sizes",
    "sr_ratios",
    "mlp_ratios",
    "overlapping_patch_embed",
    "conv_ffn",
    "linear_sra",
    "absolute_pos_embed",
    "pooling",
    "stage_norms",
)


class ConversionError(ValueError):
    """A checkpoint that cannot become a complete, correctly shaped pvt_hf model."""


Rule = tuple[str, str | Callable[[re.Match], str]]


def _stage(offset: int) -> Callable[[str], str]:
    return lambda index: str(int(index) + offset)


def _rename(key: str, rules: list[Rule]) -> str | None:
    for pattern, replacement in rules:
        if (match := re.fullmatch(pattern, key)) is not None:
            return replacement(match) if callable(replacement) else match.expand(replacement)
    return None


def _shift(template: str, offset: int) -> Callable[[re.Match], str]:
    """A replacement whose first group is a stage number moved by `offset` (official stages count from 1)."""
    return lambda m: template.format(_stage(offset)(m[1]), *m.groups()[1:])


_BLOCK_OFFICIAL_TO_PVT_HF = {
    "norm1": "norm1",
    "attn.q": "attention.query",
    "attn.kv": "attention.key_value",
    "attn.sr": "attention.spatial_reduction",
    "attn.norm": "attention.reduction_norm",
    "attn.proj": "attention.proj",
    "norm2": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.dwconv.dwconv": "mlp.dwconv",
    "mlp.fc2": "mlp.fc2",
}
_OFFICIAL_TO_PVT_HF: list[Rule] = [
    (r"patch_embed(\d)\.(proj|norm)\.(weight|bias)", _shift("pvt.encoder.stages.{}.patch_embed.{}.{}", -1)),
    (r"pos_embed(\d)", _shift("pvt.encoder.stages.{}.position_embedding.table", -1)),
    *(
        (rf"block(\d)\.(\d+)\.{re.escape(old)}\.(weight|bias)", _shift(f"pvt.encoder.stages.{{}}.blocks.{{}}.{new}.{{}}", -1))
        for old, new in _BLOCK_OFFICIAL_TO_PVT_HF.items()
    ),
    (r"norm(\d)\.(weight|bias)", _shift("pvt.encoder.stages.{}.norm.{}", -1)),
    (r"norm\.(weight|bias)", r"pvt.norm.\1"),
    (r"cls_token", "pvt.cls_token"),
    (r"head\.(weight|bias)", r"classifier.\1"),
]

_TIMM_TO_OFFICIAL: list[Rule] = [
    (r"patch_embed\.(.+)", r"patch_embed1.\1"),
    (r"stages\.(\d)\.downsample\.(.+)", _shift("patch_embed{}.{}", 1)),
    (r"stages\.(\d)\.blocks\.(\d+)\.mlp\.dwconv\.(.+)", _shift("block{}.{}.mlp.dwconv.dwconv.{}", 1)),
    (r"stages\.(\d)\.blocks\.(\d+)\.(.+)", _shift("block{}.{}.{}", 1)),
    (r"stages\.(\d)\.norm\.(.+)", _shift("norm{}.{}", 1)),
    (r"head\.(.+)", r"head.\1"),
]

_TRANSFORMERS_BLOCK = {  # transformers name -> official name, inside a block
    "layer_norm_1": "norm1",
    "attention.self.query": "attn.q",  # v1
    "attention.self.kv": "attn.kv",  # fused by _fuse_transformers_key_value
    "attention.self.sequence_reduction": "attn.sr",
    "attention.self.layer_norm": "attn.norm",
    "attention.output.dense": "attn.proj",
    "attention.query": "attn.q",  # v2
    "attention.kv": "attn.kv",
    "attention.spatial_reduction": "attn.sr",
    "attention.layer_norm": "attn.norm",
    "attention.proj": "attn.proj",
    "layer_norm_2": "norm2",
    "mlp.dense1": "mlp.fc1",
    "mlp.dwconv.dwconv": "mlp.dwconv.dwconv",
    "mlp.dense2": "mlp.fc2",
}
_TRANSFORMERS_TO_OFFICIAL: list[Rule] = [
    # v1: PvtForImageClassification / PvtModel
    (r"encoder\.patch_embeddings\.(\d)\.projection\.(.+)", _shift("patch_embed{}.proj.{}", 1)),
    (r"encoder\.patch_embeddings\.(\d)\.layer_norm\.(.+)", _shift("patch_embed{}.norm.{}", 1)),
    (r"encoder\.patch_embeddings\.(\d)\.position_embeddings", _shift("pos_embed{}", 1)),
    (r"encoder\.patch_embeddings\.\d\.cls_token", "cls_token"),
    (r"encoder\.layer_norm\.(.+)", r"norm.\1"),
    # v2: PvtV2ForImageClassification / PvtV2Model / PvtV2Backbone
    (r"encoder\.layers\.(\d)\.patch_embedding\.proj\.(.+)", _shift("patch_embed{}.proj.{}", 1)),
    (r"encoder\.layers\.(\d)\.patch_embedding\.layer_norm\.(.+)", _shift("patch_embed{}.norm.{}", 1)),
    (r"encoder\.layers\.(\d)\.layer_norm\.(.+)", _shift("norm{}.{}", 1)),
    # blocks of both
    *(
        (rf"encoder\.(?:block|layers)\.(\d)\.(?:blocks\.)?(\d+)\.{re.escape(old)}\.(weight|bias)", _shift(f"block{{}}.{{}}.{new}.{{}}", 1))
        for old, new in _TRANSFORMERS_BLOCK.items()
    ),
    (r"classifier\.(.+)", r"head.\1"),
]
_TRANSFORMERS_KEY_VALUE = re.compile(r"(encoder\.(?:block|layers)\.\d\.(?:blocks\.)?\d+\.attention\.(?:self\.)?)(key|value)\.(weight|bias)")


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
        from safetensors.torch import load_file

        return load_file(str(path))
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


def to_official(state_dict: dict[str, torch.Tensor], source: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a `source` state dict to the official key names. Returns it and the keys no rule took."""
    if source not in SOURCES:
        raise ConversionError(f"Unknown source {source!r}; expected one of {SOURCES}")
    if source == "official":
        return dict(state_dict), []
    if source == "timm":
        rules = _TIMM_TO_OFFICIAL
    else:
        rules = _TRANSFORMERS_TO_OFFICIAL
        state_dict = _fuse_transformers_key_value(_strip_transformers_prefix(state_dict))
    out, unused = {}, []
    for key, tensor in state_dict.items():
        new_key = _rename(key, rules)
        if new_key is None:
            unused.append(key)
        else:
            out[new_key] = tensor
    return out, unused


def _strip_transformers_prefix(state_dict):
    for prefix in ("pvt.", "pvt_v2.", "backbone."):
        state_dict = {k.removeprefix(prefix): v for k, v in state_dict.items()}
    return state_dict


def _fuse_transformers_key_value(state_dict):
    """transformers keeps key and value projections apart; the official layout (and ours) fuses them as kv."""
    out, pending = {}, {}
    for key, tensor in state_dict.items():
        match = _TRANSFORMERS_KEY_VALUE.fullmatch(key)
        if match is None:
            out[key] = tensor
        else:
            pending.setdefault((match[1], match[3]), {})[match[2]] = tensor
    for (prefix, kind), parts in pending.items():
        if set(parts) == {"key", "value"}:
            out[f"{prefix}kv.{kind}"] = torch.cat([parts["key"], parts["value"]], dim=0)
        else:  # half a pair: leave it for the accounting to report
            out.update({f"{prefix}{name}.{kind}": t for name, t in parts.items()})
    return out


def official_to_pvt_hf(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Official names -> `PvtForImageClassification` names. Returns it and the keys no rule took."""
    out, unused = {}, []
    for key, tensor in state_dict.items():
        new_key = _rename(key, _OFFICIAL_TO_PVT_HF)
        if new_key is None:
            unused.append(key)
        else:
            out[new_key] = tensor
    return out, unused


def infer_structure(official: dict[str, torch.Tensor]) -> dict:
    """The structural config fields an official-layout state dict determines (heads are not among them)."""
    stages = sorted(int(m[1]) for k in official if (m := re.fullmatch(r"patch_embed(\d)\.proj\.weight", k)))
    if not stages or stages != list(range(1, len(stages) + 1)):
        raise ConversionError(
            "Not a PVT checkpoint: no patch_embed1..N.proj.weight tensors found "
            f"(first keys: {sorted(official)[:5]})"
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


def build_config(official: dict[str, torch.Tensor], preset: str | None = None, config: PvtConfig | None = None, **overrides) -> PvtConfig:
    """A config for an official-layout state dict: the given config or preset (refused if the weights contradict
    it), or the published variant the weights are. Heads cannot be read off weights, so a structure that is no
    published variant needs `config` (or `num_attention_heads=` among the overrides)."""
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
            config = PvtConfig(**structure | sr_ratios | overrides)
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
    config: PvtConfig | None = None,
) -> tuple[dict[str, torch.Tensor], PvtConfig, ConversionReport]:
    """Convert `state_dict` from `source` into the state dict of `PvtForImageClassification` (task
    ``classification``) or `PvtBackbone` (task ``backbone``), with the config and a full account of what was used.

    Raises `ConversionError` if any model parameter would stay unfilled or a shape does not match."""
    if task not in TASKS:
        raise ConversionError(f"Unknown task {task!r}; expected one of {TASKS}")
    inner, outside = split_prefix(state_dict)
    official, unused = to_official(inner, source)
    config = build_config(official, preset=preset, config=config)
    converted, unused_official = official_to_pvt_hf(official)
    model_class = PvtForImageClassification if task == "classification" else PvtBackbone
    if task == "backbone":
        head_keys = [k for k in converted if not k.startswith("pvt.encoder.")]
        unused_official += head_keys
        converted = {k.removeprefix("pvt."): v for k, v in converted.items() if k not in head_keys}
    with torch.device("meta"):
        expected = {k: v.shape for k, v in model_class(config).state_dict().items()}
    report = ConversionReport(unused_keys=sorted(outside + unused + unused_official))
    report.unused_keys += sorted(k for k in converted if k not in expected)
    report.missing_keys = sorted(k for k in expected if k not in converted)
    report.shape_mismatches = [
        f"{k}: checkpoint {tuple(converted[k].shape)} vs model {tuple(shape)}"
        for k, shape in expected.items()
        if k in converted and converted[k].shape != shape
    ]
    if not report.ok:
        raise ConversionError("Conversion would leave the model incomplete:\n" + report.summary())
    return {k: v for k, v in converted.items() if k in expected}, config, report


__all__ = [
    "ConversionError",
    "ConversionReport",
    "SOURCES",
    "TASKS",
    "build_config",
    "convert_state_dict",
    "extract_state_dict",
    "infer_structure",
    "load_checkpoint",
    "official_to_pvt_hf",
    "preset_for",
    "split_prefix",
    "to_official",
]
