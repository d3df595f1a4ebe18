# The pipeline image: every Kubeflow step (ExampleGen, Transform, Trainer, SdrEvaluator,
# Pusher) runs in it, so dotted run_fn/preprocessing_fn paths resolve to the installed package.
# It installs exactly requirements.lock, as scripts/bootstrap.sh does (tests/test_docker.py
# checks that the two agree). Build: `make image`.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# ffmpeg decodes mp3/m4a/stem.mp4 (vocalsep.audio.io).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/vocalsep
RUN python -m pip install "pip==24.2"
COPY requirements.lock .
# --no-deps: the lock is complete; --ignore-requires-python: TFX 1.16.0 declares <3.11.
RUN pip install --no-deps --ignore-requires-python -r requirements.lock

COPY setup.py README.md ./
COPY vocalsep ./vocalsep
RUN pip install --no-deps --no-build-isolation --use-pep517 . && pip check

# ImportSchemaGen reads the raw schema from here (vocalsep.pipeline.kubeflow_runner).
RUN python -c "from vocalsep.data.examples import write_raw_schema; \
write_raw_schema('/opt/vocalsep/schema')"

COPY models ./models
ENV VOCALSEP_MODEL_DIR=/opt/vocalsep/models/default

RUN useradd --uid 1000 --create-home vocalsep
USER 1000
