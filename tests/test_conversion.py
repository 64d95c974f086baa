"""Checkpoint conversion: every layout, strict accounting, loud failures, Hub-ready folders (no downloads)."""

import functools
import http.server
import json
import threading

import pytest
import torch
from conftest import convert, tiny_config, transformers_reference
from PIL import Image
from safetensors.torch import save_file

from pvt_hf import PRESETS, PvtBackbone, PvtConfig, PvtForImageClassification, conversion, hub
from pvt_hf.conversion import (
    TIMM_TO_OFFICIAL,
    ConversionError,
    convert_state_dict,
    infer_structure,
    preset_for,
    pvt_hf_to_official,
)

# ------------------------------------------------------------- every preset, official layout


@pytest.mark.parametrize("name", PRESETS)
def test_official_classification_checkpoint_of_every_preset_converts_exactly(name):
    with torch.device("meta"):
        source = PvtForImageClassification(PvtConfig.from_preset(name))
    official = pvt_hf_to_official(source.state_dict())
    assert preset_for(infer_structure(official)) == name  # the variant is read off the weights
    state_dict, config, report = convert_state_dict(official, "official")
    assert report.ok and report.unused_keys == [] and report.missing_keys == []
    assert state_dict.keys() == source.state_dict().keys()
    assert config.to_dict() == source.config.to_dict()
    assert config.id2label[1] == "goldfish, Carassius auratus"


# ------------------------------------------------------------- every layout, equal outputs


def random_model(config):
    torch.manual_seed(0)
    model = PvtForImageClassification(config).eval()
    with torch.no_grad():  # non-trivial norms and biases, so a mis-mapped tensor cannot hide
        for name, param in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                param.add_(torch.randn_like(param) * 0.1)
    return model


def write_checkpoint(model, layout, folder):
    """`model`'s weights saved in a published layout."""
    official = pvt_hf_to_official(model.state_dict())
    if layout == "official-raw":
        torch.save(official, folder / "ckpt.pth")
    elif layout == "official-model":  # DeiT-style training checkpoint
        torch.save({"model": official, "epoch": 300, "optimizer": {}}, folder / "ckpt.pth")
    elif layout == "mm-state_dict":  # mmdet/mmseg: backbone. prefix, heads beside it, no ImageNet head
        backbone = {
            f"backbone.{k}": v for k, v in official.items() if not k.startswith(("head.", "norm.", "cls_token"))
        }
        heads = {"neck.fpn_convs.0.conv.weight": torch.zeros(2, 2), "decode_head.conv_seg.weight": torch.zeros(3)}
        torch.save({"meta": {"epoch": 12}, "state_dict": {**backbone, **heads}}, folder / "ckpt.pth")
    elif layout == "safetensors":
        save_file({k: v.contiguous() for k, v in official.items()}, folder / "ckpt.safetensors")
    elif layout == "timm":
        save_file(
            {k: v.contiguous() for k, v in TIMM_TO_OFFICIAL.apply(official, reverse=True)[0].items()},
            folder / "ckpt.safetensors",
        )
    return next(folder.glob("ckpt.*"))


LAYOUTS = {
    "official-raw": "official",
    "official-model": "official",
    "mm-state_dict": "official",
    "safetensors": "official",
    "timm": "timm",
}


def assert_converted_folder_reproduces(model, folder, task):
    pixels = torch.randn(2, 3, 224, 224)
    loaded = (PvtForImageClassification if task == "classification" else PvtBackbone).from_pretrained(folder).eval()
    with torch.no_grad():
        if task == "classification":
            assert torch.equal(loaded(pixels).logits, model(pixels).logits)
        else:
            expected = model.pvt(pixels, output_hidden_states=True).hidden_states
            actual = loaded(pixels, output_hidden_states=True).hidden_states
            if model.config.pooling == "cls":  # the classifier's stage 4 sees its class token; the backbone does not
                expected, actual = expected[:3], actual[:3]
            for exp, act in zip(expected, actual, strict=True):
                assert torch.equal(act, exp)


@pytest.mark.parametrize(
    "family, layout",
    [(f, layout) for f in ("v1", "v2", "v2-li") for layout in LAYOUTS if (f, layout) != ("v1", "timm")],
)  # (timm has no PVT v1)
def test_tiny_checkpoints_of_every_layout_convert_with_equal_outputs(tmp_path, family, layout):
    config = tiny_config(family, num_labels=1000)
    model = random_model(config)
    path = write_checkpoint(model, layout, tmp_path)
    task = "backbone" if layout == "mm-state_dict" else "classification"
    # heads cannot be read off weights, so a config that is no published variant is passed in
    state_dict, converted_config, report = convert_state_dict(
        conversion.load_checkpoint(path), LAYOUTS[layout], task, config=config
    )
    assert report.ok and report.missing_keys == []
    if layout == "mm-state_dict":
        assert report.unused_keys == ["decode_head.conv_seg.weight", "neck.fpn_convs.0.conv.weight"]
    else:
        assert report.unused_keys == []
    converted = (PvtForImageClassification if task == "classification" else PvtBackbone)(converted_config)
    converted.load_state_dict(state_dict, strict=True)
    converted.save_pretrained(tmp_path / "out")
    assert_converted_folder_reproduces(model, tmp_path / "out", task)


@pytest.mark.slow  # --verify runs full-size models in float64, which has no fast CPU kernels
@pytest.mark.parametrize("name", ["pvt-small", "pvt-v2-b2", "pvt-v2-b2-li"])
def test_full_size_official_checkpoints_convert_through_the_cli(tmp_path, name, capsys):
    model = random_model(PvtConfig.from_preset(name))
    path = write_checkpoint(model, "official-model", tmp_path)
    assert convert("official", path, tmp_path / "out", "--verify") == 0
    out = capsys.readouterr().out
    assert "every checkpoint tensor mapped; every model parameter filled" in out
    # the exact references, in float64: timm for v2, transformers with the official LayerNorm eps for v1
    reference = "transformers (official LayerNorm eps)" if name == "pvt-small" else "timm"
    assert float(out.split(f"float64 relative max |pvt_hf - {reference}| = ")[1].split()[0]) < 1e-9
    assert_converted_folder_reproduces(model, tmp_path / "out", "classification")
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"# {name} (classification)" in card and str(hub.IMAGENET[name].top1) in card
    assert f"{sum(p.numel() for p in model.parameters()):,}" in card


@pytest.mark.parametrize("family", ["v1", "v2", "v2-li"])
def test_transformers_checkpoint_folder_converts_and_verifies(tmp_path, family, capsys):
    config = PvtConfig.from_preset({"v1": "pvt-tiny", "v2": "pvt-v2-b0", "v2-li": "pvt-v2-b2-li"}[family])
    reference = transformers_reference(config)
    reference.save_pretrained(tmp_path / "hf")
    code = convert("transformers", tmp_path / "hf", tmp_path / "out", "--verify")
    assert code == 0, capsys.readouterr().err
    loaded = PvtForImageClassification.from_pretrained(tmp_path / "out").eval()
    pixels = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixels).logits, reference(pixels).logits, atol=1e-4, rtol=0)


def test_mm_backbone_of_a_full_size_v1_checkpoint(tmp_path, capsys):
    model = random_model(PvtConfig.from_preset("pvt-small"))
    path = write_checkpoint(model, "mm-state_dict", tmp_path)
    code = convert("official", path, tmp_path / "out", "--task", "backbone", "--verify")
    assert code == 0, capsys.readouterr().err
    assert "2 checkpoint tensors left unused" in capsys.readouterr().out
    assert_converted_folder_reproduces(model, tmp_path / "out", "backbone")


# ------------------------------------------------------------- loud failures


def test_truncated_file_fails_with_a_clear_message(tmp_path, capsys):
    model = random_model(tiny_config("v2"))
    path = write_checkpoint(model, "official-raw", tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert convert("official", path, tmp_path / "o", "--preset", "pvt-v2-b0") == 1
    assert "Cannot read checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_checkpoint_missing_tensors_names_them(tmp_path, capsys):
    model = random_model(PvtConfig.from_preset("pvt-v2-b0"))
    official = pvt_hf_to_official(model.state_dict())
    del official["block4.1.mlp.fc2.weight"], official["norm4.bias"]
    torch.save(official, tmp_path / "ckpt.pth")
    assert convert("official", tmp_path / "ckpt.pth", tmp_path / "o") == 1
    err = capsys.readouterr().err
    assert "2 model parameters not filled" in err
    assert "pvt.encoder.stages.3.blocks.1.mlp.fc2.weight" in err and "pvt.encoder.stages.3.norm.bias" in err


def test_wrong_preset_is_refused_naming_the_contradictions(tmp_path, capsys):
    model = random_model(PvtConfig.from_preset("pvt-v2-b0"))
    path = write_checkpoint(model, "official-raw", tmp_path)
    assert convert("official", path, tmp_path / "o", "--preset", "pvt-v2-b1") == 1
    err = capsys.readouterr().err
    assert "contradicts" in err and "hidden_sizes: checkpoint [32, 64, 160, 256] vs config [64, 128, 320, 512]" in err


def test_shape_mismatch_is_reported():
    official = pvt_hf_to_official(random_model(tiny_config("v2")).state_dict())
    official["block2.0.attn.q.bias"] = torch.zeros(7)
    with pytest.raises(
        ConversionError, match=r"pvt.encoder.stages.1.blocks.0.attention.query.bias: checkpoint \(7,\) vs model \(32,\)"
    ):
        convert_state_dict(official, "official", config=tiny_config("v2"))


def test_checkpoint_of_another_architecture_fails(tmp_path, capsys):
    import transformers

    vit = transformers.ViTForImageClassification(
        transformers.ViTConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=32
        )
    )
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    for source in ("official", "transformers", "timm"):
        assert convert(source, tmp_path / "vit.pth", tmp_path / "o") == 1
        assert "Not a PVT checkpoint" in capsys.readouterr().err


# ------------------------------------------------------------- Hub-ready folder


CLASSIFY = """
    import json, sys
    from PIL import Image
    from transformers import pipeline
    classify = pipeline("image-classification", model=sys.argv[1], trust_remote_code=True)
    print(json.dumps([r["label"] for r in classify(Image.open(sys.argv[2]), top_k=3)]))
"""


def test_converted_folder_serves_pipeline_with_imagenet_names_without_pvt_hf(tmp_path, fresh_python):
    model = random_model(PvtConfig.from_preset("pvt-v2-b0"))
    path = write_checkpoint(model, "official-model", tmp_path)
    assert convert("official", path, tmp_path / "out") == 0
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["id2label"]["0"] == "tench, Tinca tinca" and len(config["id2label"]) == 1000
    from transformers import pipeline

    in_process = pipeline("image-classification", model=str(tmp_path / "out"))
    image = torch.randint(0, 255, (240, 320, 3), dtype=torch.uint8).numpy()
    Image.fromarray(image).save(tmp_path / "image.png")
    labels = [r["label"] for r in in_process(image, top_k=3)]
    assert len(labels) == 3 and all(label in config["id2label"].values() for label in labels)
    assert fresh_python(CLASSIFY, tmp_path / "out", tmp_path / "image.png") == labels  # the same answer without pvt_hf


# ------------------------------------------------------------- fetching and publishing (no network)


def test_url_checkpoints_are_downloaded_once(tmp_path):
    model = random_model(tiny_config("v2"))
    serve = tmp_path / "serve"
    serve.mkdir()
    write_checkpoint(model, "official-raw", serve)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(serve))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/ckpt.pth"
        path = hub.resolve_checkpoint(url, cache_dir=tmp_path / "cache")
        assert path == tmp_path / "cache" / "ckpt.pth" and path.read_bytes() == (serve / "ckpt.pth").read_bytes()
        (serve / "ckpt.pth").unlink()  # a second resolve uses the cache
        assert hub.resolve_checkpoint(url, cache_dir=tmp_path / "cache") == path
        with pytest.raises(hub.HubError, match="Could not download"):
            hub.resolve_checkpoint(url.replace("ckpt", "missing"), cache_dir=tmp_path / "cache")
    finally:
        server.shutdown()


def test_hub_repo_ids_fail_clearly_offline(tmp_path):
    with pytest.raises(hub.HubError, match="neither a local path nor a URL"):
        hub.resolve_checkpoint("OpenGVLab/pvt_v2_b0", cache_dir=tmp_path)


def test_push_to_hub_creates_repo_and_uploads_the_folder(tmp_path, monkeypatch, capsys):
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, private, exist_ok):
            calls.append(("create_repo", repo_id, private, exist_ok))

        def upload_folder(self, folder_path, repo_id, commit_message):
            calls.append(
                (
                    "upload_folder",
                    sorted(p.name for p in __import__("pathlib").Path(folder_path).iterdir()),
                    repo_id,
                    commit_message,
                )
            )
            return "https://hub.example/commit/1"

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    path = write_checkpoint(random_model(PvtConfig.from_preset("pvt-v2-b0")), "official-raw", tmp_path)
    code = convert("official", path, tmp_path / "out", "--push_to_hub", "me/pvt-v2-b0")
    assert code == 0
    assert calls[1] == ("create_repo", "me/pvt-v2-b0", False, True)
    name, files, repo_id, message = calls[2]
    assert repo_id == "me/pvt-v2-b0" and "Convert official PVT checkpoint" in message
    assert {"README.md", "config.json", "model.safetensors", "modeling_pvt.py", "preprocessor_config.json"} <= set(
        files
    )
    assert "me/pvt-v2-b0" in (tmp_path / "out" / "README.md").read_text()


def test_push_to_hub_without_network_or_token_says_what_to_do(tmp_path, monkeypatch, capsys):
    path = write_checkpoint(random_model(PvtConfig.from_preset("pvt-v2-b0")), "official-raw", tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = convert("official", path, tmp_path / "out", "--push_to_hub", "me/x")
    assert code == 3
    err = capsys.readouterr().err
    assert "Cannot" in err and "is saved" in err and (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.parametrize(
    "failure, message",
    [("network", "Cannot reach the Hub"), ("token", "no Hub token"), ("refused", "The Hub refused the push")],
)
def test_push_failures_become_clear_hub_errors(tmp_path, monkeypatch, failure, message):
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    refused = HfHubHTTPError.__new__(HfHubHTTPError)  # (its constructor wants a live HTTP response)
    Exception.__init__(refused, "403 Forbidden")
    error = {
        "network": ConnectionError("Name or service not known"),
        "token": LocalTokenNotFoundError("no token"),
        "refused": refused,
    }[failure]

    class FailingApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, *args, **kwargs):
            raise error

    monkeypatch.setattr(huggingface_hub, "HfApi", FailingApi)
    with pytest.raises(hub.HubError, match=message):
        hub.push_folder(tmp_path, "me/x", "msg")
