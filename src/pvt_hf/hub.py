"""Hub plumbing: fetch checkpoints, write model cards, publish folders."""

import os
import urllib.parse
import urllib.request
from pathlib import Path

from .conversion import preset_for

# The papers' ImageNet-1k top-1 (%) for each published variant (v1 paper Table 2, v2 paper Table 2).
PAPER_TOP1 = {
    "pvt-tiny": 75.1,
    "pvt-small": 79.8,
    "pvt-medium": 81.2,
    "pvt-large": 81.7,
    "pvt-v2-b0": 70.5,
    "pvt-v2-b1": 78.7,
    "pvt-v2-b2": 82.0,
    "pvt-v2-b2-li": 82.1,
    "pvt-v2-b3": 83.2,
    "pvt-v2-b4": 83.6,
    "pvt-v2-b5": 83.8,
}

# The papers' ADE20K mIoU (%) of Semantic FPN on each backbone (v1 paper Table 5, v2 paper Table 4).
PAPER_SEMANTIC_FPN_MIOU = {
    "pvt-tiny": 35.7,
    "pvt-small": 39.8,
    "pvt-medium": 41.6,
    "pvt-large": 42.1,
    "pvt-v2-b0": 37.2,
    "pvt-v2-b1": 42.5,
    "pvt-v2-b2": 45.2,
    "pvt-v2-b2-li": 45.1,
    "pvt-v2-b3": 47.3,
    "pvt-v2-b4": 47.9,
    "pvt-v2-b5": 48.7,
}

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


def model_card(
    config,
    task: str,
    source: str,
    checkpoint: str,
    params: int,
    macs: int,
    macs_size: int = 224,
    repo_id: str | None = None,
) -> str:
    """A model card (README.md) for a converted folder."""
    backbone = getattr(config, "backbone_config", config)
    variant = preset_for(backbone.to_dict())
    name = repo_id or "path/to/this/folder"
    auto_class, pipeline_task = {
        "classification": ("AutoModelForImageClassification", "image-classification"),
        "backbone": ("AutoBackbone", "image-feature-extraction"),
        "semantic-fpn": ("AutoModelForSemanticSegmentation", "image-segmentation"),
    }[task]
    if variant and task == "classification" and config.num_labels == 1000:
        metric = (
            f"ImageNet-1k top-1 reported by the paper for {variant}: **{PAPER_TOP1[variant]}%** (224×224, single crop)."
        )
    elif variant and task == "semantic-fpn" and config.num_labels == 150:
        metric = (
            f"ADE20K mIoU reported by the paper for Semantic FPN + {variant}: **{PAPER_SEMANTIC_FPN_MIOU[variant]}%**."
        )
    else:
        metric = "The source's metrics apply: the conversion changes no numbers (verified to 1e-4 against a reference)."
    usage = (
        f"""```python
from transformers import pipeline
predict = pipeline("{pipeline_task}", model="{name}", trust_remote_code=True)
predict("image.jpg")
```"""
        if task != "backbone"
        else ""
    )
    return f"""---
library_name: transformers
license: apache-2.0
tags: [pvt, pyramid-vision-transformer, pvt_hf, {pipeline_task}]
pipeline_tag: {pipeline_task}
---

# {variant or "PVT"} ({task})

Pyramid Vision Transformer {"v2" if backbone.stage_norms else "v1"} converted with pvt_hf
(`convert/convert_pvt_checkpoint.py --source {source} --task {task}`).

| | |
|---|---|
| variant | {variant or "custom"} |
| source | `{source}`: `{checkpoint}` |
| parameters | {params:,} |
| MACs at {macs_size}×{macs_size} | {macs / 1e9:.3f} G |
| depths / channels | {"-".join(map(str, backbone.depths))} / {"-".join(map(str, backbone.hidden_sizes))} |

{metric}

License: {LICENSES[source]}

## Usage

```python
from transformers import {auto_class}, AutoImageProcessor
model = {auto_class}.from_pretrained("{name}", trust_remote_code=True)  # or `import pvt_hf` and drop trust_remote_code
processor = AutoImageProcessor.from_pretrained("{name}", trust_remote_code=True)
```

{usage}
"""


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
