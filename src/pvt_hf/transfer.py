"""Start a dense model from a pretrained PVT: copy the trunk of a classification or backbone folder (a local folder,
what `convert/convert_pvt_checkpoint.py` writes, or a Hub id) into the `PvtBackbone` of any dense model of the
package (Semantic FPN / UperNet segmentation, DETR, Deformable DETR, Mask2Former).

Every trunk tensor of the target is copied exactly or the call fails: nothing stays at its random initialisation
silently. What the source holds beyond the trunk (the classifier, v1's class token and final LayerNorm) is reported
as unused.

    config = config_with_source_backbone(PvtDetrConfig.from_preset("pvt-small-detr-coco"), "path/to/pvt-small")
    model = PvtForObjectDetection(config)
    report = load_pretrained_backbone(model, "path/to/pvt-small")
"""

import json

import torch
from transformers.utils import cached_file, logging

from .configuration_pvt import ARCHITECTURE_FIELDS, EPS_FIELDS, PvtConfig

logger = logging.get_logger(__name__)

# The classification model's trunk (`PvtModel` under `pvt.`) holds the backbone's tensors under `pvt.encoder.`.
CLASSIFICATION_PREFIX = "pvt."
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


class BackboneTransferError(ValueError):
    """The source cannot fill the target's PVT trunk; the message says why."""


def find_backbone(model: torch.nn.Module) -> tuple[str, torch.nn.Module]:
    """The (qualified name, module) of the one PVT backbone inside `model` (classes are matched by name, so a
    remote-code copy of `PvtBackbone` is found too)."""
    found = [(name, m) for name, m in model.named_modules() if type(m).__name__ == "PvtBackbone"]
    if len(found) != 1:
        raise BackboneTransferError(
            f"{type(model).__name__} holds {len(found)} PVT backbones ({[n for n, _ in found]}); expected exactly one"
        )
    return found[0]


def _architecture(config) -> dict:
    fields = {name: getattr(config, name) for name in ARCHITECTURE_FIELDS}
    if config.absolute_pos_embed:  # v1's position tables are sized for image_size
        fields["image_size"] = config.image_size
    return fields


def check_architecture(source: PvtConfig, target: PvtConfig) -> None:
    """Raise naming every architecture field on which `source` and `target` differ."""
    source_fields, target_fields = _architecture(source), _architecture(target)
    differing = [k for k in {**source_fields, **target_fields} if source_fields.get(k) != target_fields.get(k)]
    if differing:
        details = "; ".join(
            f"{k}: source {source_fields.get(k)!r} vs target {target_fields.get(k)!r}" for k in differing
        )
        raise BackboneTransferError(
            f"the source PVT's architecture differs from the target backbone's in {', '.join(differing)} ({details}). "
            "Build the target with the source's backbone (pvt_hf.transfer.config_with_source_backbone) or pick a "
            "matching source."
        )


def _resolve(name_or_path: str, filename: str, hub_kwargs: dict, required: bool = True) -> str | None:
    try:
        return cached_file(
            name_or_path,
            filename,
            _raise_exceptions_for_missing_entries=required,
            _raise_exceptions_for_connection_errors=required,
            **hub_kwargs,
        )
    except OSError as error:
        raise BackboneTransferError(
            f"cannot read {filename!r} of {name_or_path!r}: {error}\n{name_or_path!r} must be a PVT classification or "
            "backbone folder (what convert/convert_pvt_checkpoint.py writes) or a Hub id reachable now (offline: "
            "download it first, or pass the local folder)"
        ) from error


def source_config(name_or_path: str, **hub_kwargs) -> PvtConfig:
    """The PvtConfig of a classification or backbone folder / Hub id."""
    with open(_resolve(name_or_path, "config.json", hub_kwargs)) as f:
        config = json.load(f)
    if config.get("model_type") != PvtConfig.model_type:
        raise BackboneTransferError(
            f"{name_or_path!r} is a {config.get('model_type')!r} model, not a PVT classification or backbone "
            f"(model_type {PvtConfig.model_type!r}); convert official / timm / transformers checkpoints first with "
            "convert/convert_pvt_checkpoint.py"
        )
    return PvtConfig.from_dict(config)


def source_state_dict(name_or_path: str, **hub_kwargs) -> dict[str, torch.Tensor]:
    """The tensors of a folder / Hub id: model.safetensors (single or sharded) or pytorch_model.bin."""
    from safetensors.torch import load_file

    for filename in WEIGHT_FILES:
        path = _resolve(name_or_path, filename, hub_kwargs, required=False)
        if path is None:
            continue
        if filename.endswith(".bin"):
            return torch.load(path, map_location="cpu", weights_only=True)
        if filename.endswith(".json"):
            with open(path) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
            return {k: v for shard in shards for k, v in load_file(_resolve(name_or_path, shard, hub_kwargs)).items()}
        return load_file(path)
    raise BackboneTransferError(f"{name_or_path!r} holds no weights (looked for {', '.join(WEIGHT_FILES)})")


def backbone_tensors(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, tuple[str, torch.Tensor]], list[str]]:
    """{backbone name (`encoder.*`): (source key, tensor)} of a classification or backbone state dict, and the keys
    that are not the trunk's."""
    strip = CLASSIFICATION_PREFIX if any(k.startswith(CLASSIFICATION_PREFIX) for k in state_dict) else ""
    trunk = {k.removeprefix(strip): (k, v) for k, v in state_dict.items() if k.startswith(f"{strip}encoder.")}
    return trunk, sorted(k for k, _ in state_dict.items() if not k.startswith(f"{strip}encoder."))


@torch.no_grad()
def load_pretrained_backbone(model: torch.nn.Module, name_or_path: str, **hub_kwargs) -> dict:
    """Copy the PVT trunk of `name_or_path` (a classification or backbone folder or Hub id; `hub_kwargs`: revision,
    token, cache_dir, local_files_only, ...) into the PVT backbone of `model`, exactly.

    Raises `BackboneTransferError` if the architectures differ (naming the fields), or if any trunk tensor of the
    target is absent from the source or has another shape. Returns {"loaded": the target's parameter and buffer names
    that were filled, "unused_in_source": the source's keys not used (classifier, class token, final norm)}."""
    prefix, backbone = find_backbone(model)
    check_architecture(source_config(name_or_path, **hub_kwargs), backbone.config)
    trunk, unused = backbone_tensors(source_state_dict(name_or_path, **hub_kwargs))
    targets = backbone.state_dict(keep_vars=True)
    missing = sorted(k for k in targets if k not in trunk)
    misshaped = [
        f"{k}: source {tuple(trunk[k][1].shape)} vs target {tuple(v.shape)}"
        for k, v in targets.items()
        if k in trunk and trunk[k][1].shape != v.shape
    ]
    if missing or misshaped:
        raise BackboneTransferError(
            f"{name_or_path!r} cannot fill the PVT backbone of {type(model).__name__}: "
            + (f"missing {missing}" if missing else "")
            + (f" shape mismatches {misshaped}" if misshaped else "")
        )
    for key, tensor in targets.items():
        tensor.copy_(trunk[key][1])
    unused += sorted(source_key for k, (source_key, _) in trunk.items() if k not in targets)
    report = {"loaded": [f"{prefix}.{k}" for k in targets], "unused_in_source": unused}
    logger.info(
        "Loaded %d backbone tensors of %s from %s; unused in the source: %s",
        len(targets),
        type(model).__name__,
        name_or_path,
        unused or "none",
    )
    return report


def config_with_source_backbone(config, name_or_path: str, **hub_kwargs):
    """`config` (a dense model's, e.g. a preset's) with its backbone's architecture taken from `name_or_path`'s
    config; the backbone's output stages and regularisation (dropouts, drop-path rate) stay `config`'s."""
    source, target = source_config(name_or_path, **hub_kwargs), config.backbone_config
    keep = ("hidden_dropout_prob", "attention_probs_dropout_prob", "drop_path_rate", "initializer_range")
    config.backbone_config = PvtConfig(
        **{k: getattr(source, k) for k in (*ARCHITECTURE_FIELDS, *EPS_FIELDS, "image_size", "conv_init")},
        **{k: getattr(target, k) for k in keep},
        out_features=list(target.out_features),
        num_labels=0,
    )
    return config


__all__ = [
    "BackboneTransferError",
    "check_architecture",
    "config_with_source_backbone",
    "find_backbone",
    "load_pretrained_backbone",
    "source_config",
]
