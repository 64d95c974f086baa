#!/usr/bin/env python
"""Convert a published PVT checkpoint into a Hub-ready pvt_hf model folder.

Examples:
    # official ImageNet checkpoint (variant read off the weights)
    python convert/convert_pvt_checkpoint.py --source official --checkpoint pvt_v2_b2.pth --output pvt-v2-b2 --verify
    # the backbone of an official mmdetection / mmsegmentation checkpoint
    python convert/convert_pvt_checkpoint.py --source official --checkpoint retinanet_pvt_s_fpn_1x_coco.pth \\
        --task backbone --output pvt-small-retinanet-backbone
    # an official mmsegmentation Semantic FPN checkpoint (ADE20K)
    python convert/convert_pvt_checkpoint.py --source official --checkpoint fpn_pvt_s_ade20k_40k.pth \\
        --task semantic-fpn --output pvt-small-semantic-fpn-ade20k --verify
    # an official mmdetection RetinaNet / Mask R-CNN checkpoint (COCO)
    python convert/convert_pvt_checkpoint.py --source official --checkpoint retinanet_pvt_v2_b2_fpn_1x_coco.pth \\
        --task retinanet --output pvt-v2-b2-retinanet-coco
    # timm weights, transformers' own checkpoints (a folder or a Hub repo id)
    python convert/convert_pvt_checkpoint.py --source timm --checkpoint pvt_v2_b0.safetensors --output pvt-v2-b0
    python convert/convert_pvt_checkpoint.py --source transformers --checkpoint OpenGVLab/pvt_v2_b2 \\
        --output pvt-v2-b2 --verify --push_to_hub my-org/pvt-v2-b2

Every checkpoint tensor is either mapped or listed as unused; the conversion fails (exit 1) if any model parameter
would stay randomly initialised or a shape does not match, and (exit 2) if --verify finds the outputs differing from an
independent implementation of the official code, in float64, by more than rounding (1e-9 relative).
"""

import argparse
import sys
from pathlib import Path

import torch

import pvt_hf
from pvt_hf import (
    PRESETS,
    PvtBackbone,
    PvtDetectorImageProcessor,
    PvtForImageClassification,
    PvtForSemanticSegmentation,
    PvtHfImageProcessor,
    PvtMaskRCNNForInstanceSegmentation,
    PvtRetinaNetForObjectDetection,
    PvtSegmentationImageProcessor,
    count_macs,
)
from pvt_hf.conversion import (
    CHECKPOINT_KINDS,
    SOURCES,
    ConversionError,
    convert_state_dict,
    load_checkpoint,
    pvt_hf_to_official,
)
from pvt_hf.conversion_detectors import DETECTOR_TASKS, convert_detector
from pvt_hf.hub import HubError, model_card, push_folder, resolve_checkpoint
from pvt_hf.reference import verify_against_reference

# relative max-abs difference of the outputs in float64: rounding is ~1e-15; the smallest real deviation seen (one
# LayerNorm eps, 1e-5 vs 1e-6) is ~1e-6
VERIFY_TOLERANCE = 1e-9
# task -> (model class, image processor, input size of the MACs in the model card)
TASK_MODELS = {
    "classification": (PvtForImageClassification, PvtHfImageProcessor(), 224),
    "backbone": (PvtBackbone, PvtHfImageProcessor(), 224),
    "semantic-fpn": (PvtForSemanticSegmentation, PvtSegmentationImageProcessor(do_reduce_labels=True), 512),
    # the detectors' post-processing (NMS) does not run on the meta device: no MACs in their cards
    "retinanet": (PvtRetinaNetForObjectDetection, PvtDetectorImageProcessor(), None),
    "mask-rcnn": (PvtMaskRCNNForInstanceSegmentation, PvtDetectorImageProcessor(), None),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, choices=SOURCES, help="layout of the checkpoint's keys")
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="a local .pth/.bin/.safetensors file or folder, an http(s) URL, or a Hub repo id",
    )
    parser.add_argument(
        "--preset",
        choices=list(PRESETS),
        help="the variant; read off the weights when omitted, refused if they disagree",
    )
    parser.add_argument(
        "--task",
        default="classification",
        choices=(*CHECKPOINT_KINDS, *DETECTOR_TASKS),
        help="classification: the whole model with its ImageNet head; backbone: the backbone.* weights of an "
        "mmdetection/mmsegmentation checkpoint (or the trunk of a classification checkpoint); semantic-fpn: a whole "
        "mmsegmentation Semantic FPN checkpoint (backbone, neck, decode head); retinanet / mask-rcnn: a whole "
        "mmdetection 2.13 RetinaNet / Mask R-CNN checkpoint",
    )
    parser.add_argument("--output", required=True, help="the folder to write (refused if not empty, see --overwrite)")
    parser.add_argument(
        "--overwrite", action="store_true", help="write into a non-empty --output folder, replacing its files"
    )
    parser.add_argument("--push_to_hub", metavar="REPO_ID", help="also publish the folder to this Hub repo")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    parser.add_argument(
        "--verify",
        action="store_true",
        help="compare, in float64 on random inputs, with timm's pvt_v2 (v2, where timm imports) or transformers' own "
        f"PVT with the official LayerNorm eps; fail above {VERIFY_TOLERANCE} relative difference",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    output = Path(args.output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not args.overwrite:
        print(f"error: --output {output} exists and is not empty; pass --overwrite to write into it", file=sys.stderr)
        return 1
    try:
        path = resolve_checkpoint(args.checkpoint)
        convert = convert_detector if args.task in DETECTOR_TASKS else convert_state_dict
        state_dict, config, report = convert(load_checkpoint(path), args.source, args.task, args.preset)
    except (ConversionError, HubError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(report.summary())

    model_class, processor, macs_size = TASK_MODELS[args.task]
    model = model_class(config).eval()
    model.load_state_dict(state_dict, strict=True)

    if args.verify:
        non_finite = [name for name, tensor in state_dict.items() if not tensor.isfinite().all()]
        if non_finite:
            print(f"error: non-finite (NaN / inf) values in {', '.join(non_finite)}", file=sys.stderr)
            return 2
        # the Semantic FPN and detector heads have no independent implementation to run here (their tensors map by
        # name; tests/test_detectors.py checks the detectors' against mmdetection's): the backbone is verified
        dense = args.task in ("semantic-fpn", *DETECTOR_TASKS)
        trunk, trunk_task = (model.backbone, "backbone") if dense else (model, args.task)
        try:
            official = pvt_hf_to_official(trunk.state_dict())
            difference, reference = verify_against_reference(trunk, official, trunk_task)
        except ConversionError as error:
            print(f"error: cannot verify: {error}", file=sys.stderr)
            return 2
        print(f"verify: float64 relative max |pvt_hf - {reference}| = {difference:.3g}")
        if not difference <= VERIFY_TOLERANCE:  # (inf where an output is not finite)
            print(
                f"error: outputs differ from {reference} by {difference:.3g} (relative) > {VERIFY_TOLERANCE}",
                file=sys.stderr,
            )
            return 2

    model.save_pretrained(args.output)
    processor.save_pretrained(args.output)
    card = model_card(
        config,
        args.task,
        args.source,
        args.checkpoint,
        params=sum(p.numel() for p in model.parameters()),
        macs=count_macs(model, macs_size, macs_size) if macs_size else None,
        macs_size=macs_size,
        repo_id=args.push_to_hub,
    )
    if (output / "README.md").exists():
        print(f"note: --overwrite: replacing {output / 'README.md'} with the model card", file=sys.stderr)
    (output / "README.md").write_text(card)
    print(f"wrote {args.output} (pvt_hf {pvt_hf.__version__}, torch {torch.__version__})")

    if args.push_to_hub:
        try:
            url = push_folder(
                args.output, args.push_to_hub, f"Convert {args.source} PVT checkpoint with pvt_hf", args.private
            )
        except HubError as error:
            print(f"error: {error}", file=sys.stderr)
            return 3
        print(f"pushed: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
