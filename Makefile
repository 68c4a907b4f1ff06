# NetGPT developer entry points. `make demo` and `make test` work on a fresh machine:
# they create .venv (CPU torch first, so nothing pulls a multi-GB CUDA build) on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.netgpt-installed

.PHONY: demo test test-fast protos lint lint-python bench clean-cache starter-models wheel-check

demo: $(STAMP)
	$(VENV)/bin/netgpt demo

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not e2e"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

protos: $(STAMP)
	PYTHON=$(PY) bash tools/gen_protos.sh

# python -m build, then the wheel alone in a clean venv: `netgpt --help`, packaged models and stubs
wheel-check: $(STAMP)
	VENV=$(VENV) bash .ci/wheel-check

lint-python: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

lint: node_modules/.bin/buf
	npx buf lint
	npx buf format --diff --exit-code

node_modules/.bin/buf: package.json package-lock.json
	npm install --no-audit --no-fund  # not `npm ci`: the lock cannot list every platform binary of buf
	touch $@

bench: $(STAMP)
	$(PY) -m bench.edge_generation
	$(PY) -m bench.netgpt_vs_cloud
	$(PY) -m bench.distribution
	$(PY) -m bench.deploy
	$(PY) -m bench.fleet_deploy
	$(PY) -m bench.training
	$(PY) -m bench.train_deploy --role cloud --steps 200
	$(PY) -m bench.train_deploy --role edge --method full --steps 50

# the trained starter models (netgpt/assets/starter, committed): rebuilt from the seeded recipe, ~15 min on 2 cores
starter-models: $(STAMP)
	$(PY) -m tasks.prompt_completion.starter --threads 1

clean-cache:
	rm -rf $${NETGPT_CACHE_DIR:-$$HOME/.cache/netgpt}
