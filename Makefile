# The two commands a newcomer needs: `make dev` and `make test`. Everything they need is
# installed here, pinned, into ignored folders (.venv/), or comes from Cargo.lock.

SHELL := bash
CARGO ?= cargo
VENV := .venv
PY_REQUIREMENTS := tools/python/requirements.txt tools/python/constraints.txt
# The deploy toolchain (sam, cargo-lambda, zig) has its own venv: aws-sam-cli pins a boto3
# that ministack cannot share.
SAM_VENV := .venv-sam
SAM_REQUIREMENTS := tools/python/requirements-sam.txt tools/python/constraints-sam.txt
SAM := SAM_CLI_TELEMETRY=0 PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" $(SAM_VENV)/bin/sam
PIP_INSTALL = bin/pip install --quiet --disable-pip-version-check

.PHONY: dev dev-reset test fmt lint unit cfn-lint sam-validate build bench browser key stripe openapi sim help

help:
	@echo "make dev        the whole API on http://127.0.0.1:3000 (DynamoDB on :8000, state in .local/)"
	@echo "make dev-reset  wipe the local state (.local/)"
	@echo "make test       everything CI checks: fmt, clippy, every test (OpenAPI diff, schemathesis), sam validate --lint, cfn-lint"
	@echo "make build      sam build: an arm64 bootstrap per function in .aws-sam/build/"
	@echo "make bench      sizes, cold starts, warm latency, DynamoDB calls -> bench/README.md, bench/results.json"
	@echo "make key ACCOUNT=acme [MODE=test|live]  issue an API key against the running local stack"
	@echo "make stripe     the Stripe emulator alone on http://127.0.0.1:12111"
	@echo "make openapi    regenerate openapi.json (the OpenAPI 3.1 document) from the code"
	@echo "make sim [SEEDS=100] [OPS=60] [SEED=S]  the seeded fault simulation (SEED replays one seed)"

## The local stack. PORT overrides the API port (3000).
dev:
	$(CARGO) run -p local -- serve

dev-reset:
	rm -rf .local

## Everything CI checks (.ci/run calls this and nothing else).
test: fmt lint unit sam-validate cfn-lint

fmt:
	$(CARGO) fmt --all --check

lint:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

# .venv-sam holds cargo-lambda, whose Lambda Runtime API the start test runs a bootstrap against.
unit: browser $(VENV)/.installed $(SAM_VENV)/.installed
	$(CARGO) test --workspace --locked

## Debian's Chromium and chromedriver, for the emulator's Checkout page test.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "installing chromium and chromium-driver (Debian packages) for the browser test"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver; }

cfn-lint: $(SAM_VENV)/.installed
	$(SAM_VENV)/bin/cfn-lint template.yaml

sam-validate: $(SAM_VENV)/.installed
	$(SAM) validate --lint --template template.yaml

## The deployable artifacts: `sam build` with the template's rust-cargolambda method
## (cargo-lambda cross-compiles with zig), one arm64 bootstrap per function.
build: $(SAM_VENV)/.installed
	$(SAM) build --template template.yaml

## The performance budgets of DESIGN.md, measured (bench/README.md; not a test). Release
## builds: the functions with hello (what a deploy builds), then the bench with the local
## stack in it; oha is pinned into target/tools/. BENCH_ARGS passes options (bench --help).
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
OHA := $(TARGET_DIR)/tools/bin/oha
BENCH_ARGS ?=
bench: $(SAM_VENV)/.installed $(OHA)
	$(CARGO) build --release --locked -p billing -p credits -p subscriptions -p usage -p stripe-webhook -p hello-lambda
	$(CARGO) build --release --locked -p bench
	$(TARGET_DIR)/release/bench --bin-dir $(TARGET_DIR)/release --oha $(OHA) \
	  --cargo-lambda $(SAM_VENV)/bin/cargo-lambda --json bench/results.json --readme bench/README.md $(BENCH_ARGS)

$(OHA):
	CARGO_TARGET_DIR=$(TARGET_DIR)/tools/build $(CARGO) install oha --version 1.16.0 --locked --root $(TARGET_DIR)/tools

$(VENV)/.installed: $(PY_REQUIREMENTS)
	python3 -m venv $(VENV)
	$(VENV)/$(PIP_INSTALL) -r tools/python/requirements.txt -c tools/python/constraints.txt
	touch $@

$(SAM_VENV)/.installed: $(SAM_REQUIREMENTS)
	python3 -m venv $(SAM_VENV)
	$(SAM_VENV)/$(PIP_INSTALL) -r tools/python/requirements-sam.txt -c tools/python/constraints-sam.txt
	touch $@

## The Stripe emulator alone (make dev already runs one on :12111).
stripe:
	$(CARGO) run -p stripe-emulator -- --port 12111

## The OpenAPI document, generated from the handlers' annotations (tools/openapi); the billing
## function serves the committed file at /v1/openapi.json, and a test fails when it is stale.
openapi:
	$(CARGO) run -q -p openapi

## An API key for another account on the running local stack.
ACCOUNT ?= acme
MODE ?= test
key:
	$(CARGO) run -q -p admin -- --local create-key --account $(ACCOUNT) --mode $(MODE)

## The seeded fault simulation (tools/sim): SEEDS seeds from FIRST_SEED (1), OPS steps each,
## JOBS at once; SEED=S replays one seed (add TRACE=1 for its steps). make test runs seeds
## 1-16 (tools/sim/tests/seeds.rs).
SEEDS ?= 100
OPS ?= 60
JOBS ?= 4
FIRST_SEED ?= 1
sim:
	$(CARGO) run -q --locked -p sim -- --seeds $(SEEDS) --first $(FIRST_SEED) --ops $(OPS) --jobs $(JOBS) \
	  $(if $(SEED),--seed $(SEED)) $(if $(TRACE),--trace)
