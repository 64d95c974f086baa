import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402
import torch  # noqa: E402

import pvt_hf  # noqa: E402,F401
from pvt_hf import PvtConfig, reference  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[1] / "convert"))
from convert_pvt_checkpoint import main as convert_cli  # noqa: E402

TINY = dict(
    depths=[1, 1, 2, 1], hidden_sizes=[16, 32, 40, 64], num_attention_heads=[1, 2, 5, 8], mlp_ratios=[2, 2, 2, 2]
)
FAMILIES = {"v1": "pvt-tiny", "v2": "pvt-v2-b0", "v2-li": "pvt-v2-b2-li"}


def tiny_config(family: str = "v2", **overrides) -> PvtConfig:
    """A few-thousand-parameter config with all the switches of `family` ("v1", "v2", "v2-li")."""
    return PvtConfig.from_preset(FAMILIES[family], **{**TINY, "num_labels": 10, **overrides})


@pytest.fixture(params=list(FAMILIES))
def family(request):
    return request.param


def transformers_reference(config: PvtConfig, task: str = "classification"):
    """transformers' own model (v1: Pvt*, v2: PvtV2*) with `config`'s hyper-parameters and random weights."""
    model = reference.transformers_reference(config, task)
    with torch.no_grad():  # transformers initialises v1 position tables from randn: bring them to a sane scale
        for name, param in model.named_parameters():
            if "position_embeddings" in name or "cls_token" in name:
                param.normal_(0, 0.02)
    return model


def convert(source: str, checkpoint, output, *options: str) -> int:
    """convert/convert_pvt_checkpoint.py's exit code: the `source` layout's `checkpoint` into the folder `output`."""
    return convert_cli(["--source", source, "--checkpoint", str(checkpoint), "--output", str(output), *options])


# The editable install puts src/ on the path and pvt_hf in site-packages: a clean process hides both.
_WITHOUT_PVT_HF = """\
import sys
sys.modules["pvt_hf"] = None  # `import pvt_hf` now raises ImportError: only a folder's remote code can serve
sys.path = [p for p in sys.path if not p.rstrip("/").endswith("src")]
"""


@pytest.fixture
def fresh_python(tmp_path):
    """`fresh_python(script, *args)` runs `script` in a new interpreter as a user without this checkout would:
    `python -I` (no PYTHON* variables, user site or working folder on the path), offline, an empty HF_HOME and, unless
    `with_pvt_hf=True`, pvt_hf not importable, so a saved folder must serve through transformers and its own remote
    code; `env` adds or replaces variables (e.g. HF_ENDPOINT and HF_HUB_OFFLINE=0 for a local Hub). The test fails
    with the script's stderr when it exits non-zero; else the script's last line of output is returned, read as JSON
    (the script prints what it observed, the test asserts on it)."""

    def run(script: str, *args, with_pvt_hf: bool = False, env: dict[str, str] | None = None):
        code = textwrap.dedent(script) if with_pvt_hf else _WITHOUT_PVT_HF + textwrap.dedent(script)
        env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"), "PATH": "/usr/bin:/bin", **(env or {})}
        done = subprocess.run(
            [sys.executable, "-I", "-c", code, *map(str, args)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.splitlines()[-1])

    return run
