# Two commands for a new user: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test protos openapi bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# mypy's cache can keep a module it once found missing as missing after a stub package
	# arrives (google.rpc did), and report errors that a fresh run does not.
	rm -rf .mypy_cache
	touch $(STAMP)

## Starts gRPC on :50051 on the embedded SQLite database in ./data (see --help for flags).
run: $(STAMP)
	$(BIN)/customer-segments serve

## Lint, type-check, then every test (PostgreSQL half needs 127.0.0.1:5432; required when CI=true).
test: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy
	$(BIN)/pytest -q

## Regenerates generated/ from protos/.
protos: $(STAMP)
	$(BIN)/python scripts/generate_protos.py

## Rebuilds the gateway's openapi.yaml from the Emporix file (tests/contract/emporix-customer-segment-api.yml).
openapi: $(STAMP)
	$(BIN)/python scripts/build_openapi.py

## Service beside the machine's ceilings (needs PostgreSQL, h2load); see README.
bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
