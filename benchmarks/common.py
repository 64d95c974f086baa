"""The models under test, all holding one set of weights, and what the benchmarks do with them.

Every implementation is wrapped as ``pixels -> tuple of tensors`` (`pvt_hf.reference`) so that timing, losses and output
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

import pvt_hf  # noqa: E402
from pvt_hf import PvtBackbone, PvtConfig, PvtForImageClassification, conversion  # noqa: E402
from pvt_hf.reference import (  # noqa: E402
    TensorOutputs,
    max_abs_difference,
    pvt_hf_outputs,
    timm_outputs,
    transformers_outputs,
    transformers_v1_stage_maps,
)

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


def pvt_hf_model(preset: str, task: str, weights: dict) -> TensorOutputs:
    config = config_for(preset, task)
    if task == "backbone":
        weights = {k.removeprefix("pvt."): v for k, v in weights.items() if k.startswith("pvt.encoder.")}
    with torch.device("meta"):  # no initialisation work: the weights are assigned below
        model = (PvtForImageClassification if task == "classification" else PvtBackbone)(config)
    model.load_state_dict(weights, strict=True, assign=True)
    return pvt_hf_outputs(model.eval())


def transformers_model(preset: str, task: str, weights: dict, height: int, width: int) -> TensorOutputs:
    official = conversion.pvt_hf_to_official(weights)
    return transformers_outputs(config_for(preset, task), official, task, height, width)


def timm_model(preset: str, task: str, weights: dict) -> TensorOutputs:
    """timm's pvt_v2_* (raises ImportError where timm does not import, ValueError for v1, which timm lacks)."""
    return timm_outputs(config_for(preset, task), conversion.pvt_hf_to_official(weights), task)


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
        actual = transformers_v1_stage_maps(reference.model, pixels, config)
        compared = "feature maps of stages 1-3"
    else:
        expected, actual = ours(pixels), reference(pixels)
        compared = "logits" if task == "classification" else f"feature maps of stages 1-{len(expected)}"
    diff = max(max_abs_difference(a.float(), b.float()) for a, b in zip(actual, expected, strict=True))  # NaN: inf
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
        # the build's CUDA version (None: a CPU-only build) and the vector ISA its CPU kernels dispatch to
        "torch_cuda_build": torch.version.cuda,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_flags": _cpu_flags(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
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


def _cpu_flags() -> list[str]:
    """The CPU's vector and matrix extensions (what decides the matmul peak in each dtype)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags.split(":", 1)[1].split() if f.startswith(("avx", "amx", "fma")))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
