# One command per job. Every target installs first (idempotent: a second `make install` takes seconds).
# Run `make help` for the list.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# No nvidia-smi -> pin the CPU wheel of torch, so pip never pulls a multi-GB CUDA build.
CONSTRAINTS := $(if $(shell command -v nvidia-smi 2>/dev/null),,-c constraints-cpu.txt)
# Projects that exist so far; a missing one breaks neither install nor test.
PROJECTS := $(patsubst %/requirements.txt,%,$(wildcard translation/requirements.txt quantization/requirements.txt moe_summarization/requirements.txt))
TEST_DIRS := shared_utils/tests $(wildcard $(addsuffix /tests,$(PROJECTS))) tests
PYTEST_ARGS ?=
# test workers (pytest-xdist): one per core, at most 4 (the longest test module alone takes ~3 min, so more
# workers gain little and each costs a torch + transformers import's memory); conftest.py splits the threads
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN); echo $$(( n < 4 ? n : 4 )))

# every job runs on DEVICE: auto (a GPU when there is one), cpu, cuda or cuda:N
DEVICE ?= auto
# quantization: QUANT_DATA=hub (default: GPT-2 Large + hub AG News, wants a GPU) or local (MiniLM, ../shared files)
QUANT_DATA ?= hub
LOCAL_AGNEWS ?= ../shared/data/agnews
QUANT_PRESET ?= $(if $(filter local,$(QUANT_DATA)),minilm,gpt2-large)
QUANT_TRAIN ?= $(if $(filter local,$(QUANT_DATA)),$(LOCAL_AGNEWS)/train.csv,hf:fancyzhx/ag_news::train)
QUANT_DEV ?= $(if $(filter local,$(QUANT_DATA)),$(LOCAL_AGNEWS)/dev.csv,hf:fancyzhx/ag_news::test)
QUANT_RUN ?= runs/quant-$(QUANT_PRESET)
QUANT_NAME ?= bench
# moe: the layer benchmark reads MOE_TEXT; the summarizer benchmark MOE_DATA=hub (XSum, wants a GPU) or local
MOE_TEXT ?= ../shared/data/summarization/train.jsonl
MOE_DATA ?= hub
# the size, steps and learning rate come from the data source's preset (BENCH_PRESETS); MOE_ARGS overrides them
MOE_ARGS ?=
MOE_BUDGET_MIN ?= 0
# translation: MT_DATA=hub (default: OPUS-100 en-fi, wants a GPU) or local (../shared/data/translation)
MT_DATA ?= hub
LOCAL_MT ?= ../shared/data/translation
MT_PRESET ?= small
MT_POSITIONAL ?= rope
MT_STEPS ?= 20000
MT_BUDGET_MIN ?= 0
MT_TRAIN ?= $(if $(filter local,$(MT_DATA)),$(LOCAL_MT)/train.fi-en.tsv,hf:Helsinki-NLP/opus-100:en-fi:train)
MT_DEV ?= $(if $(filter local,$(MT_DATA)),$(LOCAL_MT)/dev.tatoeba.fi-en.tsv $(LOCAL_MT)/dev.newstest2018.fi-en.tsv,hf:Helsinki-NLP/opus-100:en-fi:validation)
# users compare fi->en systems on Tatoeba and newstest, as OPUS-MT does: both are scored besides OPUS-100's test
MT_TEST ?= $(if $(filter local,$(MT_DATA)),$(MT_DEV),hf:Helsinki-NLP/opus-100:en-fi:test \
	hf:Helsinki-NLP/tatoeba_mt:eng-fin:test hf:wmt/wmt19:fi-en:validation)
MT_RUN ?= runs/mt-$(MT_POSITIONAL)

.DEFAULT_GOAL := help
.PHONY: help install test lint gpu-smoke demo demo-translation demo-quant demo-moe translation translation-bench translation-recipe translation-decoding translation-deploy quant-bench quant-scale moe-bench moe-xsum

help: ## List every target with one line each
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv and install shared_utils, the projects and their requirements

$(STAMP): constraints-cpu.txt requirements-dev.txt pyproject.toml shared_utils/pyproject.toml $(addsuffix /requirements.txt,$(PROJECTS))
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(CONSTRAINTS) \
		-r requirements-dev.txt $(addprefix -r ,$(addsuffix /requirements.txt,shared_utils $(PROJECTS)))
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e shared_utils -e .
	touch $(STAMP)

test: install ## Run every test (shared_utils and all projects) on the CPU
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope $(TEST_DIRS) $(PYTEST_ARGS)

gpu-smoke: install ## Every project's default path at tiny scale on one GPU (<10 min) -> results/gpu_smoke.json
	$(PY) gpu_smoke.py --device $(DEVICE)

lint: install ## Lint the whole repository with ruff
	$(VENV)/bin/ruff check .

demo: demo-translation demo-quant demo-moe ## The first run: every project end to end at toy scale, offline (~3 min on 2 CPU cores)

demo-translation: install ## Tiny translator on the synthetic sample; every decoding strategy
	$(PY) -m translation.demo

demo-quant: install ## Tiny classifier on the synthetic headlines; every quantization method
	$(PY) -m quantization.demo

demo-moe: install ## Every MoE router on one batch; tiny dense and MoE summarizers on the synthetic sample
	$(PY) -m moe_summarization.demo

quant-bench: install ## Train the fp32 classifier, then benchmark every precision (QUANT_DATA=local: offline MiniLM)
	$(PY) -m quantization.train --preset $(QUANT_PRESET) --train $(QUANT_TRAIN) --dev $(QUANT_DEV) --out $(QUANT_RUN) \
		--device $(DEVICE)
	$(PY) -m quantization.bench --checkpoint $(QUANT_RUN) --train $(QUANT_TRAIN) --dev $(QUANT_DEV) --name $(QUANT_NAME) \
		--device $(DEVICE) --publish

quant-scale: install ## GPT-2 small, medium and large (random weights): memory and latency per CPU precision (~40 min, 2 cores)
	$(PY) -m quantization.bench_scale --publish

moe-bench: install ## Benchmark the MoE layer (speed vs dense/HF, balance under each balancer) -> moe_summarization/results
	$(PY) -m moe_summarization.bench_moe --data $(MOE_TEXT) --publish

moe-xsum: install ## Train MoE + dense summarizers, score them with lead-1 and the baselines (MOE_DATA=local, MOE_BUDGET_MIN)
	$(PY) -m moe_summarization.bench_summarization --data $(MOE_DATA) --time-budget-min $(MOE_BUDGET_MIN) \
		--device $(DEVICE) --publish $(MOE_ARGS)

translation: install ## Train the Finnish->English Transformer, then score it (MT_DATA=local, MT_POSITIONAL, MT_BUDGET_MIN)
	$(PY) -m translation.train --out $(MT_RUN) --preset $(MT_PRESET) --positional $(MT_POSITIONAL) \
		--steps $(MT_STEPS) --time-budget-min $(MT_BUDGET_MIN) --train $(MT_TRAIN) --dev $(MT_DEV)
	for set in $(MT_TEST); do $(PY) -m translation.eval --checkpoint $(MT_RUN) --input $$set; done

translation-bench: install ## The compute-matched training benchmark: 3 position schemes (+ kept ablations) vs a Marian peer, after translation-recipe
	$(PY) -m translation.bench_training --publish

translation-recipe: install ## Issue #20's sweep on the selection split: shared recipes for ours and the peer, then our architecture ablations
	$(PY) -m translation.bench_recipe --stage recipe --publish
	$(PY) -m translation.bench_recipe --stage ablations --publish

translation-decoding: install ## The decoding study on the benchmark's best checkpoint (after translation-bench)
	$(PY) -m translation.bench_decoding --publish

translation-deploy: install ## CTranslate2 fp32/int8 vs our decoder and HF generate() on the benchmark's checkpoints (after translation-bench)
	$(PY) -m translation.bench_deploy --publish
