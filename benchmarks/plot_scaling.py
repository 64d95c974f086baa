"""Cost vs input size: MACs and measured inference time of PVT v1 (SRA), v2 (SRA) and v2-li (linear SRA).

The papers' claim to reproduce: spatial-reduction attention still costs O(N^2 / R^2) for N tokens, so MACs grow
quadratically in the pixel count at high resolution, while linear SRA pools keys and values to a fixed 7x7 and grows
linearly (v2 paper, Fig. 1 / Sec. 3.2). MACs come from `pvt_hf.count_macs` (on the meta device: instant); times are
medians of batch-1 forwards of pvt_hf and of transformers' own implementation on the same weights.

    python benchmarks/plot_scaling.py [--sizes 224 384 544 704 864 1024] [--macs-only] [--output docs/cost_scaling.png]

Needs matplotlib (``pip install matplotlib``); without it, prints the numbers and writes the JSON only.
"""

import argparse
import json
import sys
from pathlib import Path

if not __package__:  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.common import ROOT, build, canonical_weights, forward_macs  # noqa: E402
from benchmarks.timing import time_steps  # noqa: E402

PRESETS = ["pvt-small", "pvt-v2-b2", "pvt-v2-b2-li"]
IMPLS = ["pvt_hf", "transformers"]


def gmacs(preset: str, size: int) -> float:
    return forward_macs(preset, "classification", 1, size, size) / 1e9


@torch.inference_mode()
def forward_ms(impl: str, preset: str, weights: dict, size: int, repeats: int) -> float:
    """Median batch-1 forward time after one warm-up (a fresh model per size: transformers' v1 gets position tables
    interpolated to that size, see `pvt_hf.reference.give_transformers_v1_tables`)."""
    model = build(impl, preset, "classification", weights, size, size)
    pixels = torch.randn(1, 3, size, size)
    return 1e3 * time_steps(lambda: model(pixels), repeats, warmup=1)["median_step_s"]


def measure(sizes: list[int], macs_only: bool, repeats: int) -> dict:
    data = {"sizes": sizes, "gmacs": {}, "ms": {}}
    for preset in PRESETS:
        data["gmacs"][preset] = [gmacs(preset, s) for s in sizes]
        print(preset, "GMACs", " ".join(f"{v:.1f}" for v in data["gmacs"][preset]), flush=True)
        if macs_only:
            continue
        weights = canonical_weights(preset)
        for impl in IMPLS:
            data["ms"][f"{preset} {impl}"] = [forward_ms(impl, preset, weights, s, repeats) for s in sizes]
            print(preset, impl, "ms", " ".join(f"{v:.0f}" for v in data["ms"][f"{preset} {impl}"]), flush=True)
    return data


def plot(data: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    megapixels = [s * s / 1e6 for s in data["sizes"]]
    panels = 2 if data["ms"] else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5), squeeze=False)
    colors = dict(zip(PRESETS, ["tab:red", "tab:blue", "tab:green"], strict=True))
    names = dict(zip(PRESETS, ["PVT-Small", "PVT v2-B2", "PVT v2-B2-Li"], strict=True))
    attention = dict(zip(PRESETS, ["v1, SRA", "SRA", "linear SRA"], strict=True))
    ax = axes[0][0]
    for preset in PRESETS:
        values = data["gmacs"][preset]
        ax.plot(megapixels, values, "o-", color=colors[preset], label=f"{names[preset]} ({attention[preset]})")
        # the straight line through the first point: what a cost linear in the pixel count would be
        ax.plot(megapixels, [values[0] * m / megapixels[0] for m in megapixels], ":", color=colors[preset], lw=1)
    ax.set(ylabel="GMACs", title="MACs (dotted: linear in the pixel count)")
    ax.legend()
    if data["ms"]:
        ax = axes[0][1]
        for preset in PRESETS:
            for impl, style in zip(IMPLS, ["o-", "s--"], strict=True):
                label = f"{names[preset]}, {impl}"
                ax.plot(megapixels, data["ms"][f"{preset} {impl}"], style, color=colors[preset], label=label)
        ax.set(ylabel="ms per image", title="Inference time (solid: pvt_hf, dashed: transformers)")
        ax.legend(fontsize=8)
    for ax in axes[0]:  # x linear in the pixel count, ticks named by the square's side
        ax.grid(alpha=0.3)
        ax.set_xticks(megapixels, [str(s) for s in data["sizes"]])
        ax.set_xlabel("input side (square, batch 1); axis linear in pixels")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 384, 544, 704, 864, 1024], help="square sides")
    parser.add_argument("--macs-only", action="store_true", help="skip the timing (instant)")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per point (median)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "cost_scaling.png")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = measure(args.sizes, args.macs_only, args.repeats)
    title = f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads" if data["ms"] else "MACs only"
    data["title"] = title
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".json").write_text(json.dumps(data, indent=1))
    try:
        plot(data, args.output, title)
    except ImportError:
        print("matplotlib is not installed: wrote the numbers only", args.output.with_suffix(".json"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
