"""vocalsep: vocal / accompaniment separation as a gated, served TFX pipeline."""

import re
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (ROOT / "vocalsep" / "__init__.py").read_text(), re.M
).group(1)

setup(
    name="vocalsep",
    version=VERSION,
    description="Music source separation (vocals / accompaniment) as a TFX pipeline",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["vocalsep", "vocalsep.*"]),
    include_package_data=True,
    package_data={"vocalsep.web": ["static/*"]},
    # Exact versions live in requirements.lock; these are the direct dependencies.
    install_requires=[
        "tfx==1.16.0",
        "tensorflow==2.16.2",
        "tensorflow-transform==1.16.0",
        "apache-beam[gcp]==2.59.0",
        "kfp==2.8.0",
        "tensorflow-serving-api==2.16.1",
        "protobuf>=4.25.2,<5",
        "numpy>=1.26,<2",
        "librosa>=0.10",
        "soundfile>=0.12",
        "soxr>=0.3",
        "museval>=0.4",
        "tqdm>=4",
        "starlette>=1.0",
        "uvicorn>=0.30",
        "python-multipart>=0.0.18",
    ],
    entry_points={
        "console_scripts": [
            "vocalsep=vocalsep.cli:main",
            "vocalsep-beam-boot=vocalsep.beam_worker:boot_main",
            "vocalsep-beam-worker-pool=vocalsep.beam_worker:pool_main",
        ]
    },
)
