# The pipeline image: every Kubeflow step (ExampleGen, Transform, BaseModel, Trainer,
# SdrEvaluator, Pusher) runs in it through `python -m vocalsep.pipeline.kfp_executor`, and so
# does `vocalsep serve`. It installs exactly requirements.lock, as scripts/bootstrap.sh does
# (tests/test_docker.py checks that the two agree). One file, two ways to build it:
#
#   docker build -t IMAGE .     where a registry is reachable: python:3.11-slim-bookworm, PyPI
#   make image                  where none is (scripts/build_image.sh): a base made from Debian
#                               packages with debootstrap (Debian 12's own Python 3.11.2 and
#                               ffmpeg) and a wheelhouse pip filled on the host, over loopback
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE} AS pipeline

# Where pip finds the locked wheels; empty: PyPI.
ARG WHEELHOUSE_URL=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH \
    TF_CPP_MIN_LOG_LEVEL=3

# ffmpeg decodes mp3/m4a/stem.mp4 (vocalsep.audio.io); a Debian-made base already has it.
RUN if ! command -v ffmpeg >/dev/null; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg \
        && rm -rf /var/lib/apt/lists/*; \
    fi

WORKDIR /opt/vocalsep
RUN python3 -m venv /opt/venv \
    && python -m pip install ${WHEELHOUSE_URL:+--no-index --find-links "$WHEELHOUSE_URL"} "pip==24.2"
COPY requirements.lock .
# --no-deps: the lock is complete; --ignore-requires-python: TFX 1.16.0 declares <3.11.
RUN pip install ${WHEELHOUSE_URL:+--no-index --find-links "$WHEELHOUSE_URL"} --no-deps --ignore-requires-python -r requirements.lock

COPY setup.py README.md ./
COPY vocalsep ./vocalsep
RUN pip install --no-deps --no-build-isolation --use-pep517 . && pip check

# ImportSchemaGen reads the raw schema from here (vocalsep.pipeline.kubeflow_runner).
RUN python -c "from vocalsep.data.examples import write_raw_schema; \
write_raw_schema('/opt/vocalsep/schema')"

COPY models ./models
ENV VOCALSEP_MODEL_DIR=/opt/vocalsep/models/default

# Beam's SDK container contract (vocalsep.beam_worker): where runners look for the boot.
RUN mkdir -p /opt/apache/beam && ln -s /opt/venv/bin/vocalsep-beam-boot /opt/apache/beam/boot

RUN useradd --uid 1000 --create-home vocalsep
USER 1000

# The Beam SDK container (`--target beam-sdk`, tagged <repository>-beam-sdk:<tag>): the same
# image with the boot as its entrypoint and Beam's own images' user, as Dataflow
# (--sdk_container_image) and Flink's DOCKER environment start it with the worker's flags.
FROM pipeline AS beam-sdk
USER root
ENTRYPOINT ["/opt/apache/beam/boot"]

# The default target: the pipeline image.
FROM pipeline
