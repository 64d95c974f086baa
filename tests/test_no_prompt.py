"""pipeline() on a saved pvt_hf folder, in a process with a closed stdin and a time limit: it never asks
interactively, with pvt_hf imported (`trust_remote_code` True, False or left out) or not (True, as the model card
says)."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import _WITHOUT_PVT_HF, tiny_config

from pvt_hf import PvtForImageClassification, PvtHfImageProcessor

PROMPT = "Do you wish to run the custom code?"

PIPELINE = """
import json, sys
trust = json.loads(sys.argv[2])
if sys.argv[3] == "import":
    import pvt_hf
from transformers import pipeline
kwargs = {} if trust is None else {"trust_remote_code": trust}
classify = pipeline("image-classification", model=sys.argv[1], **kwargs)
print(json.dumps(type(classify.model).__module__))
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("classifier")
    torch.manual_seed(0)
    PvtForImageClassification(tiny_config()).save_pretrained(folder)
    PvtHfImageProcessor().save_pretrained(folder)
    return folder


def run_pipeline(folder, trust, with_pvt_hf: bool) -> tuple[str, str]:
    """(the model class's module, everything the process printed)."""
    code = textwrap.dedent(PIPELINE) if with_pvt_hf else _WITHOUT_PVT_HF + textwrap.dedent(PIPELINE)
    argv = [str(folder), json.dumps(trust), "import" if with_pvt_hf else "no-import"]
    done = subprocess.run(
        [sys.executable, "-I", "-c", code, *argv],
        stdin=subprocess.DEVNULL,  # a prompt would read EOF here; its text on stdout gives it away
        capture_output=True,
        text=True,
        timeout=240,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HF_HOME": str(folder.parent / "hf_home")},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1]), done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "trust, with_pvt_hf, module",
    [
        (True, True, "pvt_hf."),
        (False, True, "pvt_hf."),
        # left out: transformers' video-processor probe used to ask here (the folder's remote image processor names a
        # remote video processor); pvt_hf now registers its configs as having none
        (None, True, "pvt_hf."),
        (True, False, "transformers_modules."),
    ],
    ids=["pvt_hf-trust", "pvt_hf-no-trust", "pvt_hf-trust-left-out", "remote-code"],
)
def test_pipeline_never_asks(folder, trust, with_pvt_hf, module):
    served_by, output = run_pipeline(folder, trust, with_pvt_hf)
    assert PROMPT not in output
    assert served_by.startswith(module)  # with pvt_hf imported its own classes serve, else the folder's code
