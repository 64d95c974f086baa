"""The key maps between checkpoint layouts: every source layout is renamed to the official PVT repository's key names
(the lingua franca of all published weights), then one table maps official names to pvt_hf's. `conversion` builds
on these (configs, accounting); `reference` uses them to load the same weights into other implementations.

- ``official``: the official repository's classification checkpoints and its mmdetection / mmsegmentation backbones;
- ``timm``: timm's ``pvt_v2_*`` weights;
- ``transformers``: transformers' own ``PvtForImageClassification`` / ``PvtModel`` (v1) and ``PvtV2*`` (v2).
"""

import re

import torch

SOURCES = ("official", "timm", "transformers")


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
                    strict=True,
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
