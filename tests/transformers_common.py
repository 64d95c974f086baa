"""transformers' own common tests (ModelTesterMixin, BackboneTesterMixin, ConfigTester, ImageProcessingTestMixin),
taken from the source distribution of the *installed* transformers: downloaded once with pip into a cache
(`~/.cache/pvt_hf/transformers-sdist`, or `$PVT_HF_TRANSFORMERS_SDIST`), never copied into this repository.

The sdist ships `tests/test_*_common.py` but not the few modules they import from the rest of transformers' test tree
(the exporter tests, the generation tester, the config kwargs table, a CI download helper): minimal stand-ins for
those are written next to the extracted files. `load()` returns the importable package name, or raises `Unavailable`
with the reason (no network, no pip), which the tests turn into a skip.
"""

import importlib
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import transformers

PACKAGE = "transformers_common_tests"
COMMON_FILES = (
    "test_modeling_common.py",
    "test_backbone_common.py",
    "test_configuration_common.py",
    "test_image_processing_common.py",
)
STAND_INS = {
    # stand-in: the exporter tests are not in the sdist
    "exporters/test_export.py": "class ExportTesterMixin:\n    pass\n",
    "generation/test_utils.py": "class GenerationTesterMixin:  # stand-in: vision models do not generate\n    pass\n",
    # transformers' tests/utils/test_configuration_utils.py table (its v5 entries)
    "utils/test_configuration_utils.py": (
        "config_common_kwargs = {\n"
        '    "return_dict": False, "output_hidden_states": True, "output_attentions": True, "dtype": "float16",\n'
        '    "chunk_size_feed_forward": 5, "architectures": ["BertModel"], "id2label": {0: "label"},\n'
        '    "label2id": {"label": "0"}, "problem_type": "regression",\n'
        "}\n"
    ),
}
# transformers' utils/fetch_hub_objects_for_ci.py maps the Hub's test images to CI copies; offline, each URL gets a
# deterministic synthetic image (label maps: class ids below 150)
CI_HELPER = """import hashlib
import pathlib

import numpy as np
from PIL import Image


def url_to_local_path(url, *args, **kwargs):
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    path = pathlib.Path(__file__).parent / "images" / f"{digest}.png"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        rng = np.random.default_rng(int(digest, 16))
        high = 150 if url.endswith(".png") else 256
        Image.fromarray(rng.integers(0, high, (96, 128, 3), dtype=np.uint8)).save(path)
    return str(path)
"""


class Unavailable(Exception):
    pass


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "pvt_hf" / "transformers-sdist"
    return Path(os.environ.get("PVT_HF_TRANSFORMERS_SDIST", default))


def _download(version: str) -> Path:
    archive = cache_dir() / f"transformers-{version}.tar.gz"
    if not archive.is_file():
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q"]
        command += [f"transformers=={version}", "-d", str(cache_dir())]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
            detail = getattr(error, "stderr", "") or str(error)
            raise Unavailable(f"cannot download the transformers {version} sdist: {detail.strip()[-300:]}") from error
    if not archive.is_file():
        raise Unavailable(f"pip did not leave {archive}")
    return archive


def _extract(version: str) -> Path:
    root = cache_dir() / version
    package = root / PACKAGE
    helper = root / "utils" / "fetch_hub_objects_for_ci.py"
    if (package / "__init__.py").is_file() and helper.is_file() and helper.read_text() == CI_HELPER:
        return root
    archive = _download(version)
    package.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        for name in COMMON_FILES:
            member = tar.extractfile(f"transformers-{version}/tests/{name}")
            if member is None:
                raise Unavailable(f"{archive} has no tests/{name}")
            (package / name).write_bytes(member.read())
    for relative, text in STAND_INS.items():
        (package / relative).parent.mkdir(exist_ok=True)
        (package / relative).parent.joinpath("__init__.py").touch()
        (package / relative).write_text(text)
    (root / "utils").mkdir(exist_ok=True)
    (root / "utils" / "fetch_hub_objects_for_ci.py").write_text(CI_HELPER)
    (package / "__init__.py").touch()  # last: marks a complete extraction
    return root


def load() -> str:
    """Import path of the extracted tests package (`transformers_common_tests`)."""
    root = _extract(transformers.__version__)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    return PACKAGE
