# airflow-provider-sfint: the ways in. Everything installs into .venv from the package registries.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# The oldest Airflow this provider supports; CI runs the suite against it as a second job.
FLOOR_AIRFLOW ?= 3.1.8
FLOOR_VENV := .venv-floor
FLOOR_STAMP := $(FLOOR_VENV)/.installed-stamp

PYTEST_WORKERS ?= -n 2 --dist worksteal
BENCHES := bench-emulator bench-query bench-ingest bench-composite bench-events bench-cdc bench-realistic

.PHONY: diagrams proto install demo airflow bench docs test test-floor test-distributed distributed-services lint typecheck pytest emulator bench-emulator bench-query bench-ingest bench-composite bench-events bench-cdc bench-realistic clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,emulator,examples]'
	touch $(STAMP)

install: $(STAMP)

$(FLOOR_STAMP): pyproject.toml
	test -x $(FLOOR_VENV)/bin/python || $(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(FLOOR_VENV)/bin/python -m pip install --quiet 'apache-airflow==$(FLOOR_AIRFLOW)' -e '.[dev,emulator,examples]'
	touch $(FLOOR_STAMP)

# The test suite against the Airflow floor (lint and types do not depend on the Airflow version).
test-floor: $(FLOOR_STAMP)
	$(FLOOR_VENV)/bin/pytest -p no:cacheprovider $(PYTEST_WORKERS)

# The main job and the event-driven DAG on CeleryExecutor: PostgreSQL (metadata) and Redis (broker) from the Debian
# packages, installed here when missing (as root; Debian's automatic "main" cluster is not created), each
# started by the test on a free loopback port and stopped after it; moto's S3 server holds the lake.
DIST_STAMP := $(VENV)/.distributed-stamp
$(DIST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,emulator,examples,distributed]'
	touch $(DIST_STAMP)

distributed-services:
	@if command -v redis-server >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		echo "PostgreSQL and Redis are installed"; \
	else \
		test "$$(id -u)" = 0 || { echo "install postgresql and redis-server (Debian packages), or run as root"; exit 1; }; \
		mkdir -p /etc/postgresql-common; \
		test -e /etc/postgresql-common/createcluster.conf || echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql redis-server; \
	fi

test-distributed: $(DIST_STAMP) distributed-services
	$(BIN)/pytest -p no:cacheprovider -m distributed tests/distributed

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# pytest exits 5 when no test ran; make fails on any non-zero exit, so an empty run fails the target.
# Two worker processes (pytest-xdist), each with its own emulator, Airflow home and servers: most tests wait on
# subprocesses and sockets, so two share the machine's 2 cores well (9 min instead of 16 here).
pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_WORKERS)

# The docs site, strict: a broken link, nav entry or reference fails the build.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --quiet --site-dir $(VENV)/site

test: lint typecheck docs pytest

# The main job end to end: emulator with a ~200,000-record demo org, the example DAG, a summary.
demo: $(STAMP)
	$(BIN)/python demo/run_demo.py

# Airflow's UI on loopback with the emulator and the example DAGs; Ctrl-C stops both.
airflow: $(STAMP)
	$(BIN)/python demo/run_airflow.py

emulator: $(STAMP)
	$(BIN)/sfint-emulator --seed demo --grpc-port 8766 $(ARGS)

# Every benchmark, then docs/performance.md and its chart from the results (about 40 minutes on 2 cores).
bench: $(BENCHES)
	$(BIN)/python bench/report.py

bench-emulator: $(STAMP)
	$(BIN)/python bench/emulator.py

# Peers are installed only for the benchmark (the official provider's hook is one of them).
bench-query: $(STAMP)
	$(BIN)/python -m pip install --quiet 'apache-airflow-providers-salesforce>=5.10'
	$(BIN)/python bench/query.py

bench-ingest: $(STAMP)
	$(BIN)/python bench/ingest.py

# End to end under the emulator's realistic org profile (latency, job durations, bandwidth): about 25 minutes.
bench-realistic: $(STAMP)
	$(BIN)/python -m pip install --quiet 'apache-airflow-providers-salesforce>=5.10'
	$(BIN)/python bench/realistic.py

bench-composite: $(STAMP)
	$(BIN)/python bench/composite.py

# Change events: delivery to one subscriber against a bare gRPC floor, and CDC's cost on Bulk ingest.
bench-events: $(STAMP)
	$(BIN)/python bench/events.py

# Change Data Capture: decoding against bare fastavro, the cost of staying current against Bulk windows, and
# freshness through an asset watcher under airflow standalone.
bench-cdc: $(STAMP)
	$(BIN)/python bench/cdc.py

# docs/data-paths.svg, the example pipelines' data paths, from docs/diagram.py (a test checks it is current).
diagrams: $(STAMP)
	$(BIN)/python docs/diagram.py

# The Pub/Sub API's compiled descriptor set, from the .proto (tests/test_pubsub_proto.py checks it is current).
proto: $(STAMP)
	cd airflow_provider_sfint/pubsub_proto && ../../$(BIN)/python -m grpc_tools.protoc -I. --descriptor_set_out=pubsub_api.desc pubsub_api.proto

clean:
	rm -rf $(VENV) $(FLOOR_VENV) .mypy_cache .ruff_cache .pytest_cache
