# Two commands for a new user: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# buf (proto lint and breaking-change check) comes from npm, pinned in package.json / package-lock.json.
NODE_STAMP := node_modules/.installed
BUF := node_modules/.bin/buf
# What `buf breaking` compares the protos with: v1 as released (see `proto-baseline`).
PROTO_BASELINE := protos/v1.binpb

.PHONY: run test lint-protos proto-baseline protos openapi bench bench-tools bench-observability \
	bench-hot-paths bench-bulk-floor bench-events cluster cluster-stop cluster-tools bench-scaleout clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[server,dev]'
	# mypy's cache can keep a module it once found missing as missing after a stub package
	# arrives (google.rpc did), and report errors that a fresh run does not.
	rm -rf .mypy_cache
	touch $(STAMP)

# --ignore-scripts: buf's postinstall only optimizes the launcher; bin/buf finds the
# platform binary without it, and no package's script runs on a developer's machine.
$(NODE_STAMP): package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund
	touch $(NODE_STAMP)

## Starts gRPC on :50051 on the embedded SQLite database in ./data (see --help for flags).
run: $(STAMP)
	$(BIN)/customer-segments serve

## buf lint and breaking, lint, type-check, then every test (PostgreSQL half needs 127.0.0.1:5432; it and npm are required when CI=true).
test: $(STAMP) lint-protos
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy
	$(BIN)/pytest -q -n 2 --dist worksteal

## buf lint (STANDARD and COMMENTS rules, buf.yaml) over protos/, and buf breaking against the
## v1 baseline image (protos/v1.binpb). Skipped where npm is absent, except under CI=true.
# The workspace has two modules (ours and the vendored google/api), which buf would compare as
# two images against the one baseline image: so the current protos are built into one image
# first and compared as such.
ifneq ($(shell command -v npm 2>/dev/null),)
lint-protos: $(NODE_STAMP)
	$(BUF) lint
	$(BUF) build --exclude-source-info -o -#format=binpb | $(BUF) breaking -#format=binpb --against $(PROTO_BASELINE)
else ifeq ($(CI),true)
lint-protos:
	@echo "buf lint: npm is not installed, and CI=true requires it (install Node.js and npm)" >&2
	@exit 1
else
lint-protos:
	@echo "buf lint and breaking skipped: npm is not installed (install Node.js and npm to check the protos)"
endif

## Rewrites the baseline that `buf breaking` guards. Only when a new major version is
## released on purpose, never to let a breaking change of v1 through.
proto-baseline: $(NODE_STAMP)
	$(BUF) build --exclude-source-info -o $(PROTO_BASELINE)

## Regenerates generated/ from protos/.
protos: $(STAMP)
	$(BIN)/python scripts/generate_protos.py

## Rebuilds the gateway's openapi.yaml from the Emporix file (tests/contract/emporix-customer-segment-api.yml).
openapi: $(STAMP)
	$(BIN)/python scripts/build_openapi.py

## Service beside the machine's ceilings (needs PostgreSQL, h2load); see README.
bench: $(STAMP) bench-tools
	$(BIN)/python bench/run.py

## What metrics, access logs and tracing at 10% cost GetAssignment, each beside everything off
## (needs PostgreSQL, h2load); exits 1 on a missed target. See README "Cost".
bench-observability: $(STAMP) bench-tools
	$(BIN)/python bench/observability.py

## The segments of a customer, GetAssignment, REST GET and bulk upserts beside their limits,
## latency at 80% load and memory over 10 minutes of mixed load (needs PostgreSQL, h2load, wrk).
bench-hot-paths: $(STAMP) bench-tools
	$(BIN)/python bench/hot_paths.py

## Bulk upserts of a bare gRPC server (the service's statements, nothing else) beside the bare
## statements and the service: what any implementation could reach here (PostgreSQL).
bench-bulk-floor: $(STAMP)
	$(BIN)/python bench/bulk_floor.py --rounds 3

## What change events cost bulk upserts, and how fast they reach a WatchEvents stream (PostgreSQL).
bench-events: $(STAMP)
	$(BIN)/python bench/events.py

## The benchmarks' load generators, h2load and wrk, from Debian's packages: installed when
## missing and run as root, otherwise named with the command that installs them.
bench-tools:
	@if command -v h2load >/dev/null && command -v wrk >/dev/null; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client wrk; \
	else \
		echo "bench: h2load and wrk are missing; install them as root: apt-get install nghttp2-client wrk" >&2; \
		exit 1; \
	fi

## HAProxy in front of 3 replicas, on PostgreSQL (127.0.0.1:5432) through PgBouncer in
## transaction mode, on loopback; prints the ports. Its pid files and logs are in run/cluster.
cluster: $(STAMP) cluster-tools
	$(BIN)/python scripts/local_cluster.py start

## Ends exactly what `make cluster` started (the pid files in run/cluster).
cluster-stop: $(STAMP)
	$(BIN)/python scripts/local_cluster.py stop

## GetAssignment through HAProxy with 1, 2 and 3 replicas beside one replica direct, and the
## proxy hop's cost per call (needs PostgreSQL, h2load); see README "Scaling".
bench-scaleout: $(STAMP) bench-tools cluster-tools
	$(BIN)/python bench/scaleout.py

## HAProxy and PgBouncer from Debian's packages (the cluster, its test and bench-scaleout):
## installed when missing and run as root, otherwise named with the command that installs them.
cluster-tools:
	@if PATH="$$PATH:/usr/sbin" command -v haproxy >/dev/null && PATH="$$PATH:/usr/sbin" command -v pgbouncer >/dev/null; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy pgbouncer; \
	else \
		echo "cluster: haproxy and pgbouncer are missing; install them as root: apt-get install haproxy pgbouncer" >&2; \
		exit 1; \
	fi

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
