"""pvt_hf's inference with its chunked MLP (the default), with chunking off, and transformers' model, interleaved in
one process so that all three meet the same machine state: median wall seconds, CPU seconds and minor page faults per
forward, per round. `--train` times training steps (forward, backward, AdamW) of pvt_hf and transformers instead.
Random weights (speed does not depend on them; `python -m benchmarks` checks outputs agree).

    python -m benchmarks.mlp_chunking --preset pvt-v2-b2 --shape 8x224x224 [--accuracy | --train]
"""

import argparse

import torch

from pvt_hf import PvtBackbone, PvtConfig, PvtForImageClassification, reference
from pvt_hf.modeling_pvt import PvtMlp

from .timing import time_steps


def per_step(step, repeats: int) -> tuple[float, float, int]:
    """Medians (wall s, CPU s, minor faults) of `repeats` calls of `step` after one warm-up."""
    timings = time_steps(step, repeats, warmup=1)
    return timings["median_step_s"], timings["cpu_s_per_step"], timings["minor_faults_per_step"]


def forward(model, pixels):
    def step():
        with torch.no_grad():
            model(pixels)

    return step


def training_step(model, pixels):
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    labels = torch.randint(0, model.config.num_labels, (pixels.shape[0],))

    def step():
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(pixels).logits, labels).backward()
        optimizer.step()

    return step


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="pvt-v2-b2", help="backbone preset")
    parser.add_argument("--shape", default="8x224x224", help="BxHxW; 224x224 runs the classifier, others the backbone")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per measurement (median)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the variants")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument(
        "--train", action="store_true", help="time training steps of pvt_hf and transformers (224x224 shapes)"
    )
    parser.add_argument(
        "--accuracy",
        action="store_true",
        help="also report how far the chunked and the unchunked float32 outputs are from the float64 model's",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    batch, height, width = map(int, args.shape.split("x"))
    classify = (height, width) == (224, 224)
    if args.train and not classify:
        parser.error("--train times the classifiers: use a Bx224x224 shape")
    stages = {} if classify else {"out_features": ["stage1", "stage2", "stage3", "stage4"]}
    config = PvtConfig.from_preset(args.preset, **stages)
    ours = (PvtForImageClassification if classify else PvtBackbone)(config).eval()
    theirs = reference.transformers_reference(config, "classification" if classify else "backbone").eval()
    if config.absolute_pos_embed and not classify:  # transformers' v1 needs its tables at the input's grid
        reference.give_transformers_v1_tables(theirs, config, height, width)
    pixels = torch.randn(batch, 3, height, width)
    budget = PvtMlp.chunk_bytes
    if args.train:  # training never chunks
        variants = [("pvt_hf train", training_step(ours, pixels), budget)]
        variants.append(("transformers train", training_step(theirs, pixels), budget))
    else:  # 2**62: every MLP is one chunk, i.e. the plain computation
        variants = [("chunked", forward(ours, pixels), budget), ("unchunked", forward(ours, pixels), 2**62)]
        variants.append(("transformers", forward(theirs, pixels), budget))
    for round_ in range(args.rounds):
        for name, step, chunk_bytes in variants:
            PvtMlp.chunk_bytes = chunk_bytes
            wall, cpu, faults = per_step(step, args.repeats)
            print(
                f"{args.preset} {args.shape} round {round_ + 1} {name:12s} "
                f"wall {wall:.3f} s  cpu {cpu:.3f} s  faults {faults:.0f}"
            )
    PvtMlp.chunk_bytes = budget
    if args.accuracy:
        report_accuracy(ours.eval(), pixels, budget)


def outputs(model, pixels) -> list[torch.Tensor]:
    with torch.no_grad():
        out = model(pixels)
    return [out.logits] if hasattr(out, "logits") else list(out.feature_maps)


def report_accuracy(model, pixels, budget: int) -> None:
    """Chunks change the order of a few float32 sums (fc2 adds up channel groups): measure them against float64."""
    fp32 = {}
    for name, chunk_bytes in [("chunked", budget), ("unchunked", 2**62)]:
        PvtMlp.chunk_bytes = chunk_bytes
        fp32[name] = outputs(model, pixels)
    PvtMlp.chunk_bytes = 2**62
    exact = outputs(model.double(), pixels.double())
    model.float()
    PvtMlp.chunk_bytes = budget

    def gap(actual, expected):  # max |difference| / max |expected|, per output
        return " ".join(
            f"{((a.double() - e).abs().max() / e.abs().max()).item():.1e}"
            for a, e in zip(actual, expected, strict=True)
        )

    print(f"chunked vs unchunked (max |diff| / max |output|): {gap(fp32['chunked'], fp32['unchunked'])}")
    for name, out in fp32.items():
        print(f"{name} float32 vs float64: {gap(out, exact)}")


if __name__ == "__main__":
    main()
