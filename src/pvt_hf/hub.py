"""Hub plumbing: fetch checkpoints, write model cards (converted and trained folders), publish folders."""

import json
import os
import urllib.parse
import urllib.request
from pathlib import Path

from .conversion import preset_for
from .paper_numbers import IMAGENET, MASK_RCNN_COCO, RETINANET_COCO, SEMANTIC_FPN_ADE20K

LICENSES = {
    "official": "The official PVT code and weights (github.com/whai362/PVT) are released under the Apache-2.0 license.",
    "timm": "timm's pvt_v2 weights are the official ones re-packaged; timm and the weights are Apache-2.0.",
    "transformers": "transformers' PVT checkpoints carry their Hub repository's license (Apache-2.0 for OpenGVLab's).",
}


class HubError(RuntimeError):
    """The Hub or a URL could not be reached, or refused the request; the message says what to do."""


def resolve_checkpoint(checkpoint: str, cache_dir: str | Path | None = None) -> Path:
    """A local file or folder as is; an http(s) URL downloaded once into `cache_dir`; anything else taken as a Hub
    repo id and snapshot-downloaded."""
    if Path(checkpoint).exists():
        return Path(checkpoint)
    cache_dir = Path(cache_dir or os.environ.get("PVT_HF_CACHE", Path.home() / ".cache" / "pvt_hf"))
    if checkpoint.startswith(("http://", "https://")):
        target = cache_dir / Path(urllib.parse.urlparse(checkpoint).path).name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(target.suffix + ".partial")
            try:
                with urllib.request.urlopen(checkpoint, timeout=60) as response, open(partial, "wb") as out:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
            except OSError as error:
                raise HubError(
                    f"Could not download {checkpoint}: {error}. Download it by hand and pass the file."
                ) from error
            partial.rename(target)  # only complete downloads are ever found in the cache
        return target
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(checkpoint, allow_patterns=["*.json", "*.safetensors", "*.bin", "*.pth"]))
    except Exception as error:
        raise HubError(
            f"{checkpoint!r} is neither a local path nor a URL, and fetching it as a Hub repo failed "
            f"({type(error).__name__}: {error}). Check the repo id and your network, or pass a local folder."
        ) from error


def _table(rows: dict, header: tuple[str, str] = ("", "")) -> str:
    return "\n".join([f"| {header[0]} | {header[1]} |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows.items())])


def _card(
    title: str, body: str, pipeline_task: str, name: str | None, auto_class: str | None = None, license: str = ""
) -> str:
    """The one model-card layout (README.md): the Hub's front matter, `# title`, `body`, then how to load the folder
    (`name`: its Hub id, or None for a local path) with `auto_class` and, unless it is a bare backbone, a pipeline."""
    name = name or "path/to/this/folder"
    code = []  # snippets, each a list of lines
    if auto_class == "AutoBackbone":  # AutoBackbone itself loads by Hub id online only (see the note below)
        code.append(
            [
                "from transformers import AutoConfig, AutoImageProcessor",
                "from transformers.dynamic_module_utils import get_class_from_dynamic_module",
                f'auto_map = AutoConfig.from_pretrained("{name}", trust_remote_code=True).auto_map',
                f'model = get_class_from_dynamic_module(auto_map["AutoBackbone"], "{name}").from_pretrained("{name}")',
                f'processor = AutoImageProcessor.from_pretrained("{name}", trust_remote_code=True)',
            ]
        )
    elif auto_class:
        code.append(
            [
                f"from transformers import {auto_class}, AutoImageProcessor",
                f'model = {auto_class}.from_pretrained("{name}", trust_remote_code=True)',
                f'processor = AutoImageProcessor.from_pretrained("{name}", trust_remote_code=True)',
            ]
        )
    if pipeline_task != "image-feature-extraction":
        code.append(
            [
                "from transformers import pipeline",
                f'predict = pipeline("{pipeline_task}", model="{name}", trust_remote_code=True)',
                'predict("image.jpg")',
            ]
        )
    code = "\n\n".join("\n".join(lines) for lines in code)
    license = f"license: {license}\n" if license else ""
    needs = {  # what some heads need beyond torch and transformers
        "AutoModelForUniversalSegmentation": "; also scipy (transformers builds Mask2Former's matching loss with the "
        "model: `pip install scipy`)",
        "AutoModelForObjectDetection": "; RetinaNet folders also torchvision",
        "AutoModelForInstanceSegmentation": "; also torchvision (Mask R-CNN is built on torchvision.models.detection)",
    }.get(auto_class, "")
    if auto_class == "AutoBackbone":  # what tests/test_hub_mirror.py measures of transformers' AutoBackbone
        needs += (
            ".\n\n`AutoBackbone.from_pretrained` would load this folder by Hub id online only: transformers asks the "
            "Hub whether the name is a repository first, which fails under `HF_HUB_OFFLINE=1` (even from the cache) "
            "and for a local copy's path; the class its `auto_map` names (above), or `pvt_hf.PvtBackbone`, loads from "
            "both"
        )
    return f"""---
library_name: transformers
{license}tags: [pvt, pyramid-vision-transformer, pvt_hf, {pipeline_task}]
pipeline_tag: {pipeline_task}
---

# {title}

{body}

## Usage

```python
{code}
```

Without pvt_hf installed, `trust_remote_code=True` runs the modeling code saved in this folder; with `import pvt_hf`,
pvt_hf's registered classes serve with the argument or without it, and neither the Auto classes nor `pipeline()`
ask whether to trust remote code. Needs torch and transformers 5.x{needs}.
"""


def model_card(
    config,
    task: str,
    source: str,
    checkpoint: str,
    params: int,
    macs: int | None,
    macs_size: int = 224,
    repo_id: str | None = None,
) -> str:
    """A model card (README.md) for a converted folder."""
    backbone = getattr(config, "backbone_config", config)
    variant = preset_for(backbone.to_dict())
    auto_class, pipeline_task = {
        "classification": ("AutoModelForImageClassification", "image-classification"),
        "backbone": ("AutoBackbone", "image-feature-extraction"),
        "semantic-fpn": ("AutoModelForSemanticSegmentation", "image-segmentation"),
        "retinanet": ("AutoModelForObjectDetection", "object-detection"),
        "mask-rcnn": ("AutoModelForInstanceSegmentation", "image-segmentation"),
    }[task]
    paper = None
    if variant and task == "classification" and config.num_labels == 1000:
        paper = f"ImageNet-1k top-1 {IMAGENET[variant].top1}% (224×224, single crop)"
    elif variant and task == "semantic-fpn" and config.num_labels == 150:
        paper = f"ADE20K mIoU {SEMANTIC_FPN_ADE20K[variant].miou}% with Semantic FPN"
    elif variant and task == "retinanet" and config.num_labels == 80:
        paper = f"COCO val2017 box AP {RETINANET_COCO[variant].box_ap} with RetinaNet (1x)"
    elif variant and task == "mask-rcnn" and config.num_labels == 80:
        result = MASK_RCNN_COCO[variant]
        paper = f"COCO val2017 box AP {result.box_ap} / mask AP {result.mask_ap} with Mask R-CNN (1x)"
    metric = (
        f"Reported by the paper for {variant}: **{paper}**."
        if paper
        else "The source's metrics apply: the conversion changes no numbers (`--verify` checks the outputs against "
        "an implementation of the official code, in float64, to rounding)."
    )
    facts = {
        "variant": variant or "custom",
        "source": f"`{source}`: `{checkpoint}`",
        "parameters": f"{params:,}",
        **({f"MACs at {macs_size}×{macs_size}": f"{macs / 1e9:.3f} G"} if macs is not None else {}),
        "depths / channels": f"{'-'.join(map(str, backbone.depths))} / {'-'.join(map(str, backbone.hidden_sizes))}",
    }
    body = f"""Pyramid Vision Transformer {"v2" if backbone.stage_norms else "v1"} converted with pvt_hf
(`convert/convert_pvt_checkpoint.py --source {source} --task {task}`).

{_table(facts)}

{metric}

License: {LICENSES[source]}"""
    return _card(f"{variant or 'PVT'} ({task})", body, pipeline_task, repo_id, auto_class, license="apache-2.0")


def training_card(task: str, args, metrics: dict) -> str:
    """The model card of a folder that `examples/run_*.py` trained (`task`: its pipeline task)."""
    rows = {k: f"{v:.4f}" if isinstance(v, float) else v for k, v in sorted(metrics.items())}
    arguments = json.dumps({k: v for k, v in vars(args).items() if k != "hub_token"}, indent=2, default=str)
    dataset = args.dataset_name or args.train_dir or "the embedded default dataset"
    body = f"""PVT fine-tuned for {task} with pvt_hf from `{args.model_name_or_path}` on `{dataset}`.

## Evaluation

Computed through this folder's image-processor configuration, as `from_pretrained` users get it.

{_table(rows, ("metric", "value"))}

## Training arguments

```json
{arguments}
```"""
    name = (args.hub_model_id or Path(args.output_dir).name) if args.push_to_hub else None
    return _card(Path(args.output_dir).name, body, task, name)


def push_folder(
    folder: str | Path, repo_id: str, commit_message: str, private: bool = False, token: str | None = None
) -> str:
    """Create `repo_id` (if needed) and upload `folder` in one commit; returns the commit URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=commit_message)
    except OfflineModeIsEnabled as error:
        raise HubError(
            f"Cannot push to {repo_id}: HF_HUB_OFFLINE is set. Unset it and retry; {folder} is saved."
        ) from error
    except LocalTokenNotFoundError as error:
        raise HubError(
            f"Cannot push to {repo_id}: no Hub token. Run `hf auth login` or set HF_TOKEN; {folder} is saved."
        ) from error
    except HfHubHTTPError as error:
        raise HubError(f"The Hub refused the push to {repo_id}: {error}. {folder} is saved.") from error
    except Exception as error:  # no network: httpx / OSError flavours
        raise HubError(
            f"Cannot reach the Hub to push {repo_id} ({type(error).__name__}: {error}); "
            f"{folder} is saved, push it later."
        ) from error
    return str(getattr(commit, "commit_url", commit))
