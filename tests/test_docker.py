"""The pipeline image installs what `make install` installs.

No Docker daemon runs here, so the Dockerfile's steps are checked against the lock file,
the bootstrap script and the compiled pipeline instead of by building the image.
"""

from __future__ import annotations

import re
from pathlib import Path

from vocalsep.pipeline import config, kubeflow_runner

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()
BOOTSTRAP = (REPO_ROOT / "scripts" / "bootstrap.sh").read_text()


def _run_steps() -> list[str]:
    """Each RUN instruction, continuation lines joined."""
    joined = DOCKERFILE.replace("\\\n", " ")
    return [line[4:].strip() for line in joined.splitlines() if line.startswith("RUN ")]


def test_image_is_python_3_11_like_setup_py() -> None:
    assert re.search(r"^FROM python:3\.11[-.\w]*$", DOCKERFILE, re.M)
    assert 'python_requires=">=3.11,<3.12"' in (REPO_ROOT / "setup.py").read_text()


def test_image_installs_exactly_the_lock_file_with_the_bootstraps_flags() -> None:
    steps = _run_steps()
    assert "COPY requirements.lock ." in DOCKERFILE
    (lock_step,) = [step for step in steps if "-r requirements.lock" in step]
    assert lock_step.split() == [
        "pip", "install", "--no-deps", "--ignore-requires-python", "-r", "requirements.lock"
    ]  # fmt: skip
    assert "--no-deps --ignore-requires-python" in BOOTSTRAP.replace("\\\n  ", "")
    pip_version = re.search(r"^PIP_VERSION=(\S+)$", BOOTSTRAP, re.M).group(1)
    assert f'python -m pip install "pip=={pip_version}"' in steps
    (package_step,) = [step for step in steps if "pip install --no-deps --no-build" in step]
    assert package_step.endswith("&& pip check")
    # Nothing else is pip-installed: a stray `pip install x` would drift from the lock.
    installs = [step for step in steps if "pip install" in step]
    assert len(installs) == 3


def test_image_has_ffmpeg_and_the_schema_where_the_pipeline_reads_it() -> None:
    steps = " ".join(_run_steps())
    assert "apt-get install -y --no-install-recommends ffmpeg" in steps
    assert f"write_raw_schema('{kubeflow_runner.IMAGE_SCHEMA_DIR}')" in steps
    assert re.search(r"^USER 1000$", DOCKERFILE, re.M)  # not root at run time


def test_make_image_tags_what_the_pipeline_runs() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert f"IMAGE ?= {config.DEFAULT_IMAGE}" in makefile
    assert "docker build -t $(IMAGE) ." in makefile
    pipeline_yaml = (REPO_ROOT / "pipeline.yaml").read_text()
    assert f"image: {config.DEFAULT_IMAGE}" in pipeline_yaml
