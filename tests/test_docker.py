"""The pipeline image installs what `make install` installs, and builds without a registry.

These read the Dockerfile, the bootstrap and the build script; tests/test_kfp_local.py builds
nothing either but runs the image `make image` built (CI builds it first).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from vocalsep.beam_worker import BOOT_COMMAND, BOOT_PATH
from vocalsep.pipeline import config, kubeflow_runner

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()
BOOTSTRAP = (REPO_ROOT / "scripts" / "bootstrap.sh").read_text()
BUILD_IMAGE = (REPO_ROOT / "scripts" / "build_image.sh").read_text()
WHEELS = '${WHEELHOUSE_URL:+--no-index --find-links "$WHEELHOUSE_URL"}'


def _run_steps() -> list[str]:
    """Each RUN instruction, continuation lines joined."""
    joined = DOCKERFILE.replace("\\\n", " ")
    return [" ".join(line[4:].split()) for line in joined.splitlines() if line.startswith("RUN ")]


def test_registry_builds_default_to_python_3_11_slim_and_the_base_is_an_argument() -> None:
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim-bookworm$", DOCKERFILE, re.M)
    assert re.search(r"^FROM \$\{BASE_IMAGE\} AS pipeline$", DOCKERFILE, re.M)
    # The last stage is the default target: the pipeline image, not the Beam SDK container.
    assert DOCKERFILE.rstrip().splitlines()[-1] == "FROM pipeline"
    assert re.search(r'^ARG WHEELHOUSE_URL=""$', DOCKERFILE, re.M)  # empty: PyPI
    assert 'python_requires=">=3.11,<3.12"' in (REPO_ROOT / "setup.py").read_text()


def test_image_installs_exactly_the_lock_file_with_the_bootstraps_flags() -> None:
    steps = _run_steps()
    assert "COPY requirements.lock ." in DOCKERFILE
    (lock_step,) = [step for step in steps if "-r requirements.lock" in step]
    assert lock_step == (
        f"pip install {WHEELS} --no-deps --ignore-requires-python -r requirements.lock"
    )
    assert "--no-deps --ignore-requires-python" in BOOTSTRAP.replace("\\\n  ", "")
    pip_version = re.search(r"^PIP_VERSION=(\S+)$", BOOTSTRAP, re.M).group(1)
    assert any(
        step.endswith(f'python -m pip install {WHEELS} "pip=={pip_version}"') for step in steps
    )
    (package_step,) = [step for step in steps if "pip install --no-deps --no-build" in step]
    assert package_step.endswith("&& pip check")
    # Nothing else is pip-installed: a stray `pip install x` would drift from the lock.
    installs = [step for step in steps if "pip install" in step]
    assert len(installs) == 3


def test_the_wheelhouse_holds_every_pin_for_every_python_and_the_images_pip() -> None:
    # Markers are dropped when filling, so Debian's 3.11.2 finds what only it needs.
    assert "sed 's/ *;.*$//' requirements.lock" in BUILD_IMAGE
    assert "pip==$(sed -n 's/^PIP_VERSION=//p' scripts/bootstrap.sh)" in BUILD_IMAGE
    assert '--build-arg "WHEELHOUSE_URL=http://127.0.0.1:$port/"' in BUILD_IMAGE
    assert "--bind 127.0.0.1" in BUILD_IMAGE  # the wheelhouse is served on loopback only
    assert "docker pull" not in BUILD_IMAGE and "FROM" not in BUILD_IMAGE


def test_image_has_ffmpeg_the_schema_and_the_step_entrypoint() -> None:
    steps = " ".join(_run_steps())
    assert "apt-get install -y --no-install-recommends ffmpeg" in steps
    assert f"write_raw_schema('{kubeflow_runner.IMAGE_SCHEMA_DIR}')" in steps
    assert re.search(r"^USER 1000$", DOCKERFILE, re.M)  # not root at run time
    # The compiled command's `python` is the image's venv, which holds vocalsep.
    assert kubeflow_runner.STEP_COMMAND[0] == "python"
    assert "PATH=/opt/venv/bin:$PATH" in DOCKERFILE


def test_the_beam_sdk_target_is_the_pipeline_image_with_the_boot_as_entrypoint() -> None:
    """Dataflow and Flink's DOCKER environment start the SDK container with the worker's flags
    as its arguments; the pipeline image keeps no entrypoint, so KFP's commands run as given."""
    stage = DOCKERFILE.split("FROM pipeline AS beam-sdk\n", 1)[1].split("\nFROM ", 1)[0]
    assert f'ENTRYPOINT ["{BOOT_PATH}"]' in stage
    assert DOCKERFILE.count("ENTRYPOINT") == 1
    assert f"ln -s /opt/venv/bin/{BOOT_COMMAND} {BOOT_PATH}" in " ".join(_run_steps())
    # Both builds tag it by the rule the pipeline's options name it by.
    rule = "sed -E 's#(:[^:/]*)?$#-beam-sdk\\1#'"
    assert rule in BUILD_IMAGE and "--target beam-sdk" in BUILD_IMAGE
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert rule.replace("$#", "$$#") in makefile and "--target beam-sdk" in makefile
    for image in (config.DEFAULT_IMAGE, "localhost:5000/vocalsep", "registry/x:1.2"):
        tagged = subprocess.run(
            ["sed", "-E", "s#(:[^:/]*)?$#-beam-sdk\\1#"],
            input=image,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert tagged == config.beam_sdk_image(image)


def test_make_image_tags_what_the_pipeline_runs() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert f"IMAGE ?= {config.DEFAULT_IMAGE}" in makefile
    assert "bash scripts/build_image.sh $(IMAGE)" in makefile
    assert "docker build -t $(IMAGE) ." in makefile  # image-from-registries
    assert f"IMAGE:-{config.DEFAULT_IMAGE}" in BUILD_IMAGE
    pipeline_yaml = (REPO_ROOT / "pipeline.yaml").read_text()
    assert f"image: {config.DEFAULT_IMAGE}" in pipeline_yaml
