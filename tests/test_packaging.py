"""The distribution as pip builds it from a clean checkout: the thin setup.py, pyproject.toml's metadata, the files."""

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """A wheel built with pip through setup.py from a copy of what a clone holds (the tracked and unignored files)."""
    tmp = tmp_path_factory.mktemp("clean_clone")
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    clone = tmp / "pvt_hf"
    for name in filter(None, files.split("\0")):
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp / "dist"]
    subprocess.run([*map(str, command), str(clone)], check=True, capture_output=True, timeout=300)
    (built,) = (tmp / "dist").glob("pvt_hf-*.whl")
    return zipfile.ZipFile(built)


def test_setup_py_is_a_thin_shim_over_pyproject():
    source = (ROOT / "setup.py").read_text()
    assert "setup()" in source and "name=" not in source and "install_requires" not in source


def test_wheel_from_a_clean_clone_carries_the_metadata_and_the_package_files(wheel):
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = set(wheel.namelist())
    (metadata_name,) = (n for n in names if n.endswith(".dist-info/METADATA"))
    metadata = Parser().parsestr(wheel.read(metadata_name).decode())
    assert metadata["Name"] == project["name"] and metadata["Version"] == project["version"]
    requires = {str(Requirement(r)) for r in metadata.get_all("Requires-Dist") if "extra ==" not in r}
    assert requires == {str(Requirement(r)) for r in project["dependencies"]}
    assert set(metadata.get_all("Provides-Extra")) == set(project["optional-dependencies"])
    shipped = {str(p.relative_to(ROOT / "src")) for p in (ROOT / "src" / "pvt_hf").rglob("*") if p.is_file()}
    shipped = {n for n in shipped if "__pycache__" not in n}
    assert shipped <= names, f"missing from the wheel: {sorted(shipped - names)}"


def test_mask2former_declares_scipy_and_the_cards_say_what_works():
    import tomllib

    from pvt_hf.hub import _card

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["mask2former"] == ["scipy"]
    card = _card("t", "body", "image-segmentation", None, "AutoModelForUniversalSegmentation")
    assert "scipy" in card and "can go" not in card and "trust_remote_code=True" in card


MASK2FORMER_WITHOUT_SCIPY = """
    import json, sys
    sys.modules["scipy"] = None  # not installed, as transformers' availability check sees it
    sys.path.insert(0, sys.argv[1])
    from tiny_heads import mask2former_model
    try:
        mask2former_model()
        print(json.dumps("built"))
    except ImportError as error:
        print(json.dumps(str(error)))
"""


@pytest.mark.slow
def test_mask2former_without_scipy_names_the_package(fresh_python):
    message = fresh_python(MASK2FORMER_WITHOUT_SCIPY, ROOT / "tests", with_pvt_hf=True)
    assert "Mask2FormerLoss requires the scipy library" in message  # transformers' own error, at construction
