"""The models under test, all holding one set of weights, and what the benchmarks do with them.

Every implementation is wrapped as ``pixels -> tuple of tensors`` (`TensorOutputs`) so that timing, losses and output
checks treat them alike. The weights are pvt_hf's own initialisation (the official code's), converted through the
official key names into transformers' (and timm's) layout: identical numbers in every implementation.
"""

import os
import platform
import re
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import pvt_hf  # noqa: E402
from pvt_hf import PvtBackbone, PvtConfig, PvtForImageClassification, conversion  # noqa: E402


ROOT = Path(__file__).resolve().parents[1]
OURS = ("pvt_hf", "pvt_hf_compiled")
REFERENCES = ("transformers", "timm")
IMPLS = OURS + REFERENCES
CLASSIFICATION_MAX_PIXELS = 224 * 224  # larger inputs are detection-sized: benchmark the backbone path
ENVIRONMENT_PREFIXES = ("MALLOC_", "GLIBC_TUNABLES", "THP_MEM_ALLOC_ENABLE", "OMP_", "MKL_", "LD_PRELOAD")


def parse_shape(text: str) -> tuple[int, int, int]:
    """'8x224x224' -> (batch, height, width)."""
    match = re.fullmatch(r"(\d+)x(\d+)x(\d+)", text)
    if match is None:
        raise ValueError(f"shape {text!r} is not BATCHxHEIGHTxWIDTH, e.g. 8x224x224")
    return tuple(int(g) for g in match.groups())


def task_for(height: int, width: int) -> str:
    return "classification" if height * width <= CLASSIFICATION_MAX_PIXELS else "backbone"


def config_for(preset: str, task: str) -> PvtConfig:
    """The preset with its ImageNet head; the backbone returns all four stage maps, as a detector uses them."""
    if task == "backbone":
        return PvtConfig.from_preset(preset, out_features=["stage1", "stage2", "stage3", "stage4"])
    return PvtConfig.from_preset(preset)


def canonical_weights(preset: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """pvt_hf's classification weights, the source of every implementation's."""
    torch.manual_seed(seed)
    return PvtForImageClassification(config_for(preset, "classification")).state_dict()


class TensorOutputs(nn.Module):
    """`model` as pixels -> tuple of tensors: logits (classification) or feature maps (backbone)."""

    def __init__(self, model: nn.Module, pick):
        super().__init__()
        self.model, self.pick = model, pick

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.pick(self.model(pixels))


def _logits(out):
    return (out.logits,)


def _feature_maps(out):
    return tuple(out.feature_maps)


def _last_hidden_state(out):
    return (out.last_hidden_state,)


def pvt_hf_model(preset: str, task: str, weights: dict) -> TensorOutputs:
    config = config_for(preset, task)
    if task == "backbone":
        weights = {k.removeprefix("pvt."): v for k, v in weights.items() if k.startswith("pvt.encoder.")}
    with torch.device("meta"):  # no initialisation work: the weights are assigned below
        model = (PvtForImageClassification if task == "classification" else PvtBackbone)(config)
    model.load_state_dict(weights, strict=True, assign=True)
    return TensorOutputs(model.eval(), _logits if task == "classification" else _feature_maps)


def transformers_model(preset: str, task: str, weights: dict, height: int, width: int) -> TensorOutputs:
    """transformers' PvtForImageClassification / PvtV2ForImageClassification, or for the backbone path its
    PvtV2Backbone (v2) and PvtModel (v1: transformers has no v1 backbone; its PvtModel also runs the class token and
    final LayerNorm, a negligible extra cost)."""
    config = config_for(preset, task)
    reference = conversion.transformers_reference(config, task)
    official = conversion.pvt_hf_to_official(weights)
    if task == "backbone":
        official = {k: v for k, v in official.items() if not k.startswith("head.")}
    conversion.load_into_transformers(reference, official)
    if config.absolute_pos_embed and (height, width) != (config.image_size, config.image_size):
        conversion.give_transformers_v1_tables(reference, config, height, width)
    if task == "classification":
        pick = _logits
    else:
        pick = _last_hidden_state if config.absolute_pos_embed else _feature_maps
    return TensorOutputs(reference.eval(), pick)


def timm_model(preset: str, task: str, weights: dict) -> TensorOutputs:
    """timm's pvt_v2_* (raises ImportError where timm does not import, ValueError for v1, which timm lacks)."""
    try:
        import timm
    except Exception as error:  # absent, or broken by its torchvision dependency
        raise ImportError(f"timm does not import: {type(error).__name__}: {error}") from error

    if not preset.startswith("pvt-v2"):
        raise ValueError("timm has no PVT v1")
    model = timm.create_model(preset.replace("-", "_"), pretrained=False, num_classes=1000)
    model.load_state_dict(conversion.TIMM_TO_OFFICIAL.apply(conversion.pvt_hf_to_official(weights), reverse=True)[0])
    if task == "classification":
        return TensorOutputs(model.eval(), lambda out: (out,))

    class Intermediates(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, pixels):
            return self.model.forward_intermediates(pixels, intermediates_only=True)

    return TensorOutputs(Intermediates(model).eval(), tuple)


def build(impl: str, preset: str, task: str, weights: dict, height: int, width: int) -> TensorOutputs:
    """The implementation `impl` (compiled ones uncompiled: the caller compiles, to time it)."""
    if impl in OURS:
        return pvt_hf_model(preset, task, weights)
    if impl == "transformers":
        return transformers_model(preset, task, weights, height, width)
    if impl == "timm":
        return timm_model(preset, task, weights)
    raise ValueError(f"unknown implementation {impl!r}; expected one of {IMPLS}")


def forward_macs(preset: str, task: str, batch: int, height: int, width: int) -> int:
    """Multiply-accumulates of one forward of the benchmarked model (`pvt_hf.count_macs`, on the meta device)."""
    with torch.device("meta"):
        model = (PvtForImageClassification if task == "classification" else PvtBackbone)(config_for(preset, task))
    return pvt_hf.count_macs(model, height, width, batch)


def loss_fn(outputs: tuple[torch.Tensor, ...], labels: torch.Tensor, task: str) -> torch.Tensor:
    """Cross-entropy on random labels for classification; for a backbone, the mean square of every feature map, a
    stand-in for a dense-prediction head that gives every output a gradient."""
    if task == "classification":
        return F.cross_entropy(outputs[0].float(), labels)
    return sum(t.float().pow(2).mean() for t in outputs)


@torch.no_grad()
def compare_with_pvt_hf(impl: str, preset: str, task: str, weights: dict, height: int, width: int, device) -> dict:
    """Max |difference| between pvt_hf and `impl` on one random image at the benchmark size, float32.

    transformers' v1 has no backbone: its PvtModel is compared on stages 1-3 (its stage 4 runs the class token)."""
    ours = pvt_hf_model(preset, task, weights).to(device)
    reference = build(impl, preset, task, weights, height, width).to(device)
    pixels = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0)).to(device)
    config = ours.model.config
    if impl == "transformers" and task == "backbone" and config.absolute_pos_embed:
        expected = ours.model(pixels, output_hidden_states=True).hidden_states[:3]
        blocks = reference.model(pixels, output_hidden_states=True).hidden_states
        ends = [sum(config.depths[: i + 1]) - 1 for i in range(3)]
        actual = [blocks[e].transpose(1, 2).reshape(o.shape) for e, o in zip(ends, expected)]
        compared = "feature maps of stages 1-3"
    else:
        expected, actual = ours(pixels), reference(pixels)
        compared = "logits" if task == "classification" else f"feature maps of stages 1-{len(expected)}"
    diff = max((a.float() - b.float()).abs().max().item() for a, b in zip(actual, expected, strict=True))
    scale = max(b.abs().max().item() for b in expected)
    return {"compared": compared, "max_abs_diff": diff, "max_abs_value": scale, "passed": diff <= 1e-4}


def machine_info(device: str) -> dict:
    import transformers

    info = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "pvt_hf": pvt_hf.__version__,
        "device": device,
        # settings that change CPU timings of every implementation alike (see docs/benchmarks.md, "Allocator")
        "environment": {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENVIRONMENT_PREFIXES)},
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
