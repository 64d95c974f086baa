"""State-dict conversion into pvt_hf, with strict accounting.

Every source layout is first renamed to the official PVT repository's key names (the lingua franca of all published
weights), then one table maps official names to pvt_hf's. Sources:

- ``official``: the official repository's classification checkpoints (``pvt_small.pth``, ``pvt_v2_b2.pth`` ...) and
  its mmdetection / mmsegmentation checkpoints (``backbone.`` prefix, ``neck.*`` / ``decode_head.*`` beside it);
- ``timm``: timm's ``pvt_v2_*`` weights;
- ``transformers``: transformers' own ``PvtForImageClassification`` / ``PvtModel`` (v1) and ``PvtV2*`` (v2).
"""

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers.configuration_utils import PreTrainedConfig

from .configuration_pvt import LAYOUT_SWITCHES, OFFICIAL_LAYER_NORM_EPS, PRESETS, PvtConfig, label_fields
from .modeling_pvt import PvtBackbone, PvtForImageClassification

SOURCES = ("official", "timm", "transformers")
TASKS = ("classification", "backbone", "semantic-fpn")

# Structural fields that a state dict determines; a preset or config contradicting them is refused.
STRUCTURE_FIELDS = ("depths", "hidden_sizes", "patch_sizes", "sr_ratios", "mlp_ratios", *LAYOUT_SWITCHES)


class ConversionError(ValueError):
    """A checkpoint that cannot become a complete, correctly shaped pvt_hf model."""


class KeyMap:
    """A two-way renaming between two layouts, from (a, b) templates with placeholders: `{s}` a 1-based stage,
    `{i}` the same stage 0-based, `{b}` a block index, `{p}` weight/bias. The first matching pair wins."""

    _FIELDS = {"s": r"(?P<s>\d)", "i": r"(?P<i>\d)", "b": r"(?P<b>\d+)", "p": r"(?P<p>weight|bias)"}

    def __init__(self, pairs: list[tuple[str, str]]):
        self.pairs = [(self._compile(a), a, self._compile(b), b) for a, b in pairs]

    @classmethod
    def _compile(cls, template: str) -> re.Pattern:
        pattern = re.escape(template)
        for name, group in cls._FIELDS.items():
            pattern = pattern.replace(re.escape(f"{{{name}}}"), group)
        return re.compile(pattern)

    @staticmethod
    def _fill(template: str, match: re.Match) -> str:
        fields = match.groupdict()
        if "s" in fields:
            fields["i"] = str(int(fields["s"]) - 1)
        elif "i" in fields:
            fields["s"] = str(int(fields["i"]) + 1)
        return template.format(**fields)

    def rename(self, key: str, reverse: bool = False) -> str | None:
        for pattern_a, template_a, pattern_b, template_b in self.pairs:
            pattern, template = (pattern_b, template_a) if reverse else (pattern_a, template_b)
            if (match := pattern.fullmatch(key)) is not None:
                return self._fill(template, match)
        return None

    def apply(self, state_dict: dict, reverse: bool = False) -> tuple[dict, list[str]]:
        """The renamed state dict and the keys no pair took."""
        out, unused = {}, []
        for key, tensor in state_dict.items():
            new_key = self.rename(key, reverse)
            if new_key is None:
                unused.append(key)
            else:
                out[new_key] = tensor
        return out, unused


def _block_pairs(a_prefix: str, b_prefix: str, names: dict[str, str]) -> list[tuple[str, str]]:
    return [(f"{a_prefix}{a}.{{p}}", f"{b_prefix}{b}.{{p}}") for a, b in names.items()]


_OFFICIAL_BLOCK = [
    "norm1",
    "attn.q",
    "attn.kv",
    "attn.sr",
    "attn.norm",
    "attn.proj",
    "norm2",
    "mlp.fc1",
    "mlp.dwconv.dwconv",
    "mlp.fc2",
]

OFFICIAL_TO_PVT_HF = KeyMap(
    [
        ("patch_embed{s}.proj.{p}", "pvt.encoder.stages.{i}.patch_embed.proj.{p}"),
        ("patch_embed{s}.norm.{p}", "pvt.encoder.stages.{i}.patch_embed.norm.{p}"),
        ("pos_embed{s}", "pvt.encoder.stages.{i}.position_embedding.table"),
        *_block_pairs(
            "block{s}.{b}.",
            "pvt.encoder.stages.{i}.blocks.{b}.",
            dict(
                zip(
                    _OFFICIAL_BLOCK,
                    [
                        "norm1",
                        "attention.query",
                        "attention.key_value",
                        "attention.spatial_reduction",
                        "attention.reduction_norm",
                        "attention.proj",
                        "norm2",
                        "mlp.fc1",
                        "mlp.dwconv",
                        "mlp.fc2",
                    ],
                    strict=False,
                )
            ),
        ),
        ("norm{s}.{p}", "pvt.encoder.stages.{i}.norm.{p}"),
        ("norm.{p}", "pvt.norm.{p}"),
        ("cls_token", "pvt.cls_token"),
        ("head.{p}", "classifier.{p}"),
    ]
)

TIMM_TO_OFFICIAL = KeyMap(
    [
        ("patch_embed.proj.{p}", "patch_embed1.proj.{p}"),
        ("patch_embed.norm.{p}", "patch_embed1.norm.{p}"),
        ("stages.{i}.downsample.proj.{p}", "patch_embed{s}.proj.{p}"),
        ("stages.{i}.downsample.norm.{p}", "patch_embed{s}.norm.{p}"),
        *_block_pairs(
            "stages.{i}.blocks.{b}.",
            "block{s}.{b}.",
            {n.replace("dwconv.dwconv", "dwconv"): n for n in _OFFICIAL_BLOCK},
        ),
        ("stages.{i}.norm.{p}", "norm{s}.{p}"),
        ("head.{p}", "head.{p}"),
    ]
)

# transformers' v1 (PvtForImageClassification / PvtModel) and v2 (PvtV2*) layouts, without the `pvt.` / `pvt_v2.`
# prefix; key and value projections appear fused as `kv` (see _fuse_key_value / _split_key_value).
TRANSFORMERS_V1_TO_OFFICIAL = KeyMap(
    [
        ("encoder.patch_embeddings.{i}.projection.{p}", "patch_embed{s}.proj.{p}"),
        ("encoder.patch_embeddings.{i}.layer_norm.{p}", "patch_embed{s}.norm.{p}"),
        ("encoder.patch_embeddings.{i}.position_embeddings", "pos_embed{s}"),
        ("encoder.patch_embeddings.3.cls_token", "cls_token"),
        *_block_pairs(
            "encoder.block.{i}.{b}.",
            "block{s}.{b}.",
            {
                "layer_norm_1": "norm1",
                "attention.self.query": "attn.q",
                "attention.self.kv": "attn.kv",
                "attention.self.sequence_reduction": "attn.sr",
                "attention.self.layer_norm": "attn.norm",
                "attention.output.dense": "attn.proj",
                "layer_norm_2": "norm2",
                "mlp.dense1": "mlp.fc1",
                "mlp.dense2": "mlp.fc2",
            },
        ),
        ("encoder.layer_norm.{p}", "norm.{p}"),
        ("classifier.{p}", "head.{p}"),
    ]
)
TRANSFORMERS_V2_TO_OFFICIAL = KeyMap(
    [
        ("encoder.layers.{i}.patch_embedding.proj.{p}", "patch_embed{s}.proj.{p}"),
        ("encoder.layers.{i}.patch_embedding.layer_norm.{p}", "patch_embed{s}.norm.{p}"),
        *_block_pairs(
            "encoder.layers.{i}.blocks.{b}.",
            "block{s}.{b}.",
            {
                "layer_norm_1": "norm1",
                "attention.query": "attn.q",
                "attention.kv": "attn.kv",
                "attention.spatial_reduction": "attn.sr",
                "attention.layer_norm": "attn.norm",
                "attention.proj": "attn.proj",
                "layer_norm_2": "norm2",
                "mlp.dense1": "mlp.fc1",
                "mlp.dwconv.dwconv": "mlp.dwconv.dwconv",
                "mlp.dense2": "mlp.fc2",
            },
        ),
        ("encoder.layers.{i}.layer_norm.{p}", "norm{s}.{p}"),
        ("classifier.{p}", "head.{p}"),
    ]
)
_KEY_VALUE = re.compile(r"(.*\.attention\.(?:self\.)?)(key|value|kv)\.(weight|bias)")


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


def to_official(state_dict: dict[str, torch.Tensor], source: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a `source` state dict to the official key names. Returns it and the keys no rule took."""
    if source not in SOURCES:
        raise ConversionError(f"Unknown source {source!r}; expected one of {SOURCES}")
    if source == "official":
        return dict(state_dict), []
    if source == "timm":
        return TIMM_TO_OFFICIAL.apply(state_dict)
    state_dict = _fuse_key_value({_strip_prefixes(k): v for k, v in state_dict.items()})
    is_v1 = any(k.startswith("encoder.patch_embeddings.") for k in state_dict)
    return (TRANSFORMERS_V1_TO_OFFICIAL if is_v1 else TRANSFORMERS_V2_TO_OFFICIAL).apply(state_dict)


def official_to_transformers(official: dict[str, torch.Tensor], v1: bool) -> dict[str, torch.Tensor]:
    """Official names -> transformers' v1 (`Pvt*`) or v2 (`PvtV2*`) names, without the base-model prefix."""
    renamed, unused = (TRANSFORMERS_V1_TO_OFFICIAL if v1 else TRANSFORMERS_V2_TO_OFFICIAL).apply(official, reverse=True)
    if unused:
        raise ConversionError(f"transformers' PVT has no place for {unused}")
    return _split_key_value(renamed)


def _strip_prefixes(key: str) -> str:
    for prefix in ("pvt.", "pvt_v2.", "backbone."):
        key = key.removeprefix(prefix)
    return key


def _fuse_key_value(state_dict):
    """transformers keeps key and value projections apart; the official layout (and ours) fuses them as kv."""
    out, pending = {}, {}
    for key, tensor in state_dict.items():
        match = _KEY_VALUE.fullmatch(key)
        if match is None or match[2] == "kv":
            out[key] = tensor
        else:
            pending.setdefault((match[1], match[3]), {})[match[2]] = tensor
    for (prefix, kind), parts in pending.items():
        if set(parts) == {"key", "value"}:
            out[f"{prefix}kv.{kind}"] = torch.cat([parts["key"], parts["value"]], dim=0)
        else:  # half a pair: leave it for the accounting to report
            out.update({f"{prefix}{name}.{kind}": t for name, t in parts.items()})
    return out


def _split_key_value(state_dict):
    out = {}
    for key, tensor in state_dict.items():
        match = _KEY_VALUE.fullmatch(key)
        if match is not None and match[2] == "kv":
            out[f"{match[1]}key.{match[3]}"], out[f"{match[1]}value.{match[3]}"] = tensor.chunk(2, dim=0)
        else:
            out[key] = tensor
    return out


def official_to_pvt_hf(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Official names -> `PvtForImageClassification` names. Returns it and the keys no rule took."""
    return OFFICIAL_TO_PVT_HF.apply(state_dict)


def pvt_hf_to_official(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`PvtForImageClassification` (or `PvtModel` / `PvtBackbone`) names -> official names."""
    prefixed = {k if k.startswith(("pvt.", "classifier.")) else f"pvt.{k}": v for k, v in state_dict.items()}
    renamed, unused = OFFICIAL_TO_PVT_HF.apply(prefixed, reverse=True)
    assert not unused, unused
    return renamed


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
    if task not in TASKS:
        raise ConversionError(f"Unknown task {task!r}; expected one of {TASKS}")
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


# mmsegmentation's Semantic FPN (FPN neck + FPNHead): our modules carry mmcv's names, so only the classifier differs.
SEMANTIC_FPN_HEAD = KeyMap(
    [
        ("neck.lateral_convs.{i}.conv.{p}", "neck.lateral_convs.{i}.conv.{p}"),
        ("neck.fpn_convs.{i}.conv.{p}", "neck.fpn_convs.{i}.conv.{p}"),
        ("decode_head.scale_heads.{i}.{b}.conv.weight", "decode_head.scale_heads.{i}.{b}.conv.weight"),
        *(
            (f"decode_head.scale_heads.{{i}}.{{b}}.bn.{name}", f"decode_head.scale_heads.{{i}}.{{b}}.bn.{name}")
            for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        ),
        ("decode_head.conv_seg.{p}", "decode_head.classifier.{p}"),
    ]
)


def _convert_semantic_fpn(state_dict, source, preset, config):
    from .configuration_pvt_heads import PvtSegmentationConfig, ade20k_labels
    from .modeling_pvt_heads import PvtForSemanticSegmentation

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


def verify_against_reference(
    model: torch.nn.Module, official: dict[str, torch.Tensor], task: str, seed: int = 0
) -> tuple[float, str]:
    """Run `model` and an independent implementation of the official code holding the same weights (timm's pvt_v2
    where it imports and expresses the layout, else transformers' own PVT with the official LayerNorm eps), both in
    float64 so that only rounding separates them, on the same random inputs; returns the largest relative max-abs
    difference of their outputs and the reference's name. transformers' v1 reshapes its position tables with the target
    grid, so off 224 it is handed tables interpolated by the official formula; its stage 4 always runs the class
    token, so a v1 backbone is compared on stages 1-3."""
    from .reference import (  # reference.py builds on this module
        give_transformers_v1_tables,
        independent_reference,
        relative_difference,
        transformers_v1_stage_maps,
    )

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
    "official_to_transformers",
    "preset_for",
    "pvt_hf_to_official",
    "split_prefix",
    "to_official",
    "verify_against_reference",
]
