# One command sets up everything on a fresh machine and runs every check: `make test`.
# Downloads (Python wheels, the Kafka jars, tools) are cached, so a second run is fast and offline.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: lock setup kafka-jars schema-registry tools image lint typecheck unit test run demo bench kafka clean

# The tests run with the image's versions: deploy/image/dev.lock is requirements.lock plus the dev and bench
# extras, all pinned with hashes (`make lock` regenerates the three lock files in one resolution).
LOCKS := deploy/image/dev.lock deploy/image/requirements.lock deploy/image/pip.lock

$(STAMP): pyproject.toml $(LOCKS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r deploy/image/pip.lock
	$(BIN)/pip install --quiet --require-hashes -r deploy/image/dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP) kafka-jars schema-registry tools

# Regenerates the lock files from pyproject.toml, keeping every pin it can (needs PyPI and a Python 3.11);
# LOCK_ARGS=--upgrade takes every update, LOCK_ARGS='--upgrade-package httpx' one package's.
lock:
	deploy/image/lock.sh $(LOCK_ARGS)

kafka-jars: $(STAMP)
	$(BIN)/python deploy/local/kafka_local.py fetch

# Apicurio Registry (Confluent-compatible API) for the Schema Registry tests, cached under ~/.cache/imgsweep.
schema-registry: $(STAMP)
	$(BIN)/python deploy/local/schema_registry_local.py fetch

# Real tools the tests check artifacts with, cached under ~/.cache/imgsweep/tools.
tools:
	deploy/tools/fetch-asyncapi-specs.sh
	deploy/tools/install-promtool.sh
	deploy/tools/install-helm.sh
	deploy/tools/fetch-schemas.sh
	deploy/tools/install-podman.sh

# The container image from the Dockerfile, with podman: base made from Debian's packages, wheels on the host
# (deploy/image/build.sh; cached, so an unchanged tree costs about a second). PYTHON_IMAGE=... for another base.
image: $(STAMP)
	deploy/tools/install-podman.sh
	PYTHON=$(BIN)/python deploy/image/build.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) tools
	$(BIN)/pytest tests/unit -q

# pytest exits 5 when it collected no tests: that is a broken suite, not a pass.
test: setup lint typecheck
	$(BIN)/pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

# Every figure of docs/performance.md, side by side in one run (10-15 minutes on 2 cores; not part of `test`,
# which runs a quick smoke run of it).
bench: setup
	$(BIN)/python -m bench.run --out docs/performance.md

# A local broker in the foreground (Ctrl-C stops it), for trying the service by hand.
kafka: kafka-jars
	$(BIN)/python deploy/local/kafka_local.py run --port 9092 --data-dir .cache/kafka-data

run: $(STAMP)
	$(BIN)/imgsweep run

# The main job on this machine in one command: Kafka, the JD API sandbox, imgsweep and a sample stream.
demo: $(STAMP) kafka-jars
	$(BIN)/python -m devkit demo

clean:
	rm -rf $(VENV) .cache .mypy_cache .pytest_cache .ruff_cache
