# The two commands a newcomer needs: `make dev` and `make test`. Everything they need is
# installed here, pinned, into ignored folders (.venv/), or comes from Cargo.lock.

SHELL := bash
CARGO ?= cargo
VENV := .venv
PY_REQUIREMENTS := tools/python/requirements.txt

.PHONY: dev dev-reset test fmt lint unit cfn-lint key help

help:
	@echo "make dev        the whole API on http://127.0.0.1:3000 (DynamoDB on :8000, state in .local/)"
	@echo "make dev-reset  wipe the local state (.local/)"
	@echo "make test       everything CI checks: fmt, clippy, every test, cfn-lint"
	@echo "make key ACCOUNT=acme [MODE=test|live]  issue an API key against the running local stack"

## The local stack. PORT overrides the API port (3000).
dev:
	$(CARGO) run -p local -- serve

dev-reset:
	rm -rf .local

## Everything CI checks (.ci/run calls this and nothing else).
test: fmt lint unit cfn-lint

fmt:
	$(CARGO) fmt --all --check

lint:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit:
	$(CARGO) test --workspace --locked

cfn-lint: $(VENV)/.installed
	$(VENV)/bin/cfn-lint template.yaml

$(VENV)/.installed: $(PY_REQUIREMENTS)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r $(PY_REQUIREMENTS)
	touch $@

## An API key for another account on the running local stack.
ACCOUNT ?= acme
MODE ?= test
key:
	$(CARGO) run -q -p admin -- --local create-key --account $(ACCOUNT) --mode $(MODE)
