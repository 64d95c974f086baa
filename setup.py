from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="pvt_hf",
    version="0.1.0",
    description="Pyramid Vision Transformer (PVT v1 and v2) for Hugging Face Transformers",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    package_dir={"": "src"},
    packages=find_packages("src"),
    package_data={"pvt_hf": ["*.json"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        "transformers>=5.0,<6",
        "safetensors>=0.4",
        "huggingface-hub>=1.0",
        "pillow>=10",
        "numpy>=1.24",
    ],
    extras_require={
        "examples": ["accelerate>=1.0", "datasets>=3.0", "pycocotools>=2.0.7", "scikit-learn", "torchdata>=0.8"],
        "onnx": ["onnx", "onnxruntime", "onnxscript"],
        "bench": ["matplotlib"],
        "test": ["pytest>=8", "pytest-timeout"],
    },
)
