"""A short offline tour of pvt_hf: build a published variant, classify an image, extract dense features, save a
self-contained Hub folder and reload it through transformers' Auto classes.

    python examples/demo_inference.py [--preset pvt-v2-b0] [--image path.jpg] [--output_dir demo-output]

Weights are random (the Hub is not needed): the point is the API, the shapes and the numbers of each variant.
"""

import argparse

import numpy as np
import torch
from PIL import Image
from transformers import AutoModelForImageClassification

from pvt_hf import PRESETS, PvtBackbone, PvtConfig, PvtForImageClassification, PvtHfImageProcessor, count_macs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="pvt-v2-b0", choices=list(PRESETS))
    parser.add_argument("--image", help="an image file (default: a generated gradient)")
    parser.add_argument("--output_dir", default="demo-output")
    args = parser.parse_args()

    torch.manual_seed(0)
    config = PvtConfig.from_preset(args.preset)
    model = PvtForImageClassification(config).eval()
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.preset}: {params / 1e6:.2f} M parameters, {count_macs(model) / 1e9:.3f} GMACs at 224x224")

    if args.image:
        image = Image.open(args.image)
    else:
        ramp = np.linspace(0, 255, 480, dtype=np.uint8)
        image = Image.fromarray(
            np.stack(
                [np.tile(ramp, (360, 1)), np.tile(ramp[:360, None], (1, 480)), np.full((360, 480), 96, np.uint8)], -1
            )
        )
    processor = PvtHfImageProcessor()
    inputs = processor(image, return_tensors="pt")
    with torch.no_grad():
        probs = model(**inputs).logits.softmax(-1)[0]
    top = probs.topk(3)
    print(
        "top-3 (random weights):", [(config.id2label[i.item()], round(p.item(), 4)) for p, i in zip(*top, strict=True)]
    )

    backbone = PvtBackbone(PvtConfig.from_preset(args.preset, out_indices=[0, 1, 2, 3])).eval()
    with torch.no_grad():
        maps = backbone(torch.randn(1, 3, 800, 1216)).feature_maps
    print("backbone feature maps at 800x1216:", [tuple(m.shape) for m in maps])

    model.save_pretrained(args.output_dir)
    processor.save_pretrained(args.output_dir)
    reloaded = AutoModelForImageClassification.from_pretrained(args.output_dir).eval()
    with torch.no_grad():
        same = torch.equal(reloaded(**inputs).logits[0].softmax(-1), probs)
    print(f"saved to {args.output_dir}/ and reloaded with AutoModelForImageClassification: identical = {same}")


if __name__ == "__main__":
    main()
