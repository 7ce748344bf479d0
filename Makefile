# saga_streams: `make run` starts everything, `make test` checks everything.
# Every target installs what is missing first, so a fresh clone needs nothing else.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JARS_STAMP := $(VENV)/.kafka-jars

.PHONY: install tools run kafka test unit lint chaos audit bench bench-listing bench-floor bench-backpressure screenshots clean

install: $(STAMP) $(JARS_STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("saga_streams needs Python >= 3.11" if sys.version_info < (3, 11) else 0)'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# The Kafka broker's jars, resolved by Maven into a cache outside the repository.
$(JARS_STAMP): $(STAMP) kafka/pom.xml
	$(PY) -c 'from saga_streams.local.jars import ensure_jars; print("kafka jars:", ensure_jars())'
	touch $@

# BROKERS=3: a three-node Kafka cluster (replication factor 3, min ISR 2) instead of one
# node; SECURE=1: a SASL_SSL (SCRAM-SHA-512) client listener with a CA made on the spot.
KAFKA_FLAGS = $(if $(BROKERS), --brokers $(BROKERS))$(if $(SECURE), --secure)

run: install
	$(PY) -m saga_streams run$(KAFKA_FLAGS)

kafka: install
	$(PY) -m saga_streams kafka$(KAFKA_FLAGS)

lint: install
	$(VENV)/bin/ruff check saga_streams tests
	$(VENV)/bin/ruff format --check saga_streams tests
	$(VENV)/bin/mypy

# kcat and `docker compose`, which the end-to-end tests call as a person would.
tools:
	scripts/install-test-tools

# The whole suite; the unit tests' line and branch coverage is printed at the end (the
# end-to-end tests run the code in worker processes, which coverage does not follow).
test: install tools lint
	$(PY) -m pytest --cov=saga_streams --cov-branch --cov-report=term-missing:skip-covered

# The long chaos run: thousands of transfers, twenty-odd faults, then every invariant.
chaos: install
	$(PY) -m saga_streams chaos --transfers 3000 --rate 20 --kills 20 --pauses 2 \
		--broker-restarts 1 --replays 300 --concurrency 6 --max-seconds 1500

# The soak: 100,000 transfers, both workflows, 500 accounts on each side, 200 faults
# (SIGKILL of every role and of the broker, SIGSTOP, replays), sagas expiring after 60 s
# (685 s with the run's retry policy and 600 s of LEDGER_GRACE: two hundred faults in half
# an hour held a saga up to 320 s), the changelogs' tombstones kept 5 minutes after
# compaction instead of a day, so that a run of 40 minutes shows where storage levels off;
# memory and storage measured at 10k, 50k, 75k and 100k (storage settles about 27 minutes
# in: 685 s of retention, 300 s of tombstones, a 10-minute segment; 75k to 100k is after
# that). Unpaced; about 45 minutes here.
# Writes RELIABILITY.md; exits 1 on any violation.
soak: install
	$(PY) -m saga_streams chaos --transfers 100000 --rate 0 --concurrency 12 \
		--kills 140 --pauses 30 --broker-restarts 10 --replay-bursts 20 --replays 1000 \
		--accounts 500 --saga-retention 60 --ledger-grace 600 --tombstone-retention 300 \
		--checkpoints 10000,50000,75000,100000 --max-seconds 5400 --report RELIABILITY.md

# Check the invariants of the system `make run` started, through its HTTP API.
audit: install
	$(PY) -m saga_streams audit

# The figures of BENCHMARKS.md: about five minutes; results in bench-results/.
bench: install
	$(PY) -m saga_streams bench --suite bench-results --seconds 60 --concurrency 64

# GET /sagas with 100,000 sagas held: a page, a filtered page, a deep page and the counts,
# median and p99 over HTTP; about ten minutes; results in bench-results/listing.json.
bench-listing: install
	$(PY) -m saga_streams listing-bench --sagas 100000 --out bench-results/listing.json

# BENCHMARKS.md, "The floor": what a Faust agent costs per event when it only takes the
# event in a batch, writes a key durably and sends a message on; about a minute;
# results in bench-results/floor.json.
bench-floor: install
	$(PY) -m saga_streams floor-bench --events 20000 --in-flight 64 --out bench-results/floor.json

# BENCHMARKS.md, "Backpressure": the capacity in closed loop through HTTP, then POST
# /transfer open loop at twice it, with MAX_IN_FLIGHT and without; about five minutes;
# results in bench-results/backpressure/.
bench-backpressure: install
	$(PY) -m saga_streams bench --backpressure bench-results/backpressure --seconds 30 \
		--concurrency 64

# docs/screenshots/list.png and detail.png: the dashboard (GET /) on a stack of its own,
# after a few transfers, photographed by a headless Chromium.
screenshots: install tools
	$(PY) -m saga_streams.local.screenshots --out docs/screenshots

unit: install
	$(PY) -m pytest -m "not kafka"

clean:
	rm -rf .data .pytest_cache .mypy_cache .ruff_cache
