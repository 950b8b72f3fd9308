# Two commands for a newcomer: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# TensorFlow build: cpu (default), gpu or tpu. e.g. `make install TF_EXTRA=gpu`.
TF_EXTRA ?= cpu
# TensorFlow version: empty takes the newest the extra allows (2.21 for cpu and
# gpu; 2.20 for tpu, tensorflow-tpu's newest). `make install TF_VERSION=2.20.0`
# pins one (2.20 and 2.21 are supported and tested).
TF_VERSION ?=
TF_PACKAGE_cpu := tensorflow-cpu
TF_PACKAGE_gpu := tensorflow[and-cuda]
TF_PACKAGE_tpu := tensorflow-tpu
TF_PIN := $(if $(TF_VERSION),"$(TF_PACKAGE_$(TF_EXTRA))==$(TF_VERSION)")
STAMP := $(VENV)/.installed-$(TF_EXTRA)$(if $(TF_VERSION),-$(TF_VERSION))
# The second TensorFlow that `make test-compat` runs the suite on, in its own venv.
COMPAT_TF_VERSION ?= 2.20.0
COMPAT_VENV ?= .venv-tf$(COMPAT_TF_VERSION)

.PHONY: install demo demo-finetune test test-all test-ports test-hf test-compat test-beam bench clean

install: $(STAMP)

# Then compiles the dynamic-masking kernel (needs g++; without it dynamic
# masking runs on TensorFlow ops: the same masks, several times slower).
$(STAMP): setup.py data_pipeline/native/dynamic_mask_op.cc
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(TF_EXTRA),test]" $(TF_PIN)
	$(BIN)/python -m data_pipeline.native \
	  || echo "make: the dynamic-masking kernel did not build (above); dynamic masking will use TensorFlow ops"
	touch $(STAMP)

demo: install
	$(BIN)/python -m pretraining.demo $(ARGS)

# The demo checkpoint fine-tuned on a task of the same sample, against the same
# model from random weights and the majority class (pretrains first if needed).
demo-finetune: install
	$(BIN)/python -m pretraining.demo --finetune $(ARGS)

# The suite runs in TEST_WORKERS processes (pytest-xdist): on two cores, 2
# workers take ~7 minutes where one takes ~10 (much of a test is tracing, which
# is single-threaded). Tests of one module run in one worker (--dist loadscope),
# so a module-scoped fixture (a set of training runs) is made once.
# TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope $(ARGS)

# Also the `extended` tests (pytest.ini): about 3 minutes more.
test-all: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope -m "" $(ARGS)

# The package and portability checks (marker `ports`): a wheel installed in a
# fresh venv and run from an empty directory, the model under Keras's JAX and
# PyTorch backends (skipped, saying why, without jax / torch in the venv), the
# TPU extra resolving on PyPI. A few minutes.
test-ports: install
	$(BIN)/python -m pytest -m ports $(ARGS)

# The Hugging Face checks (marker `hf`): exports read by transformers'
# AutoTokenizer, fill-mask pipeline and models. `make test` skips them without
# torch and transformers; this installs both into $(VENV) (torch's CPU wheel,
# ~200 MB) and runs them. About 3 minutes on two cores.
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
test-hf: install
	$(BIN)/python -c "import torch" 2>/dev/null \
	  || $(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)" --index-url $(TORCH_INDEX)
	$(BIN)/python -c "import transformers" 2>/dev/null \
	  || $(BIN)/python -m pip install --quiet transformers
	$(BIN)/python -m pytest -m hf $(ARGS)

# The whole suite again on TensorFlow $(COMPAT_TF_VERSION) (the TPU build's
# version), in $(COMPAT_VENV).
test-compat:
	$(MAKE) test VENV=$(COMPAT_VENV) TF_VERSION=$(COMPAT_TF_VERSION) ARGS="$(ARGS)"

# The Apache Beam build (python -m data_pipeline.build --runner=...): Beam
# needs protobuf < 7, which .venv's sentencepiece refuses, so its tests run in
# $(BEAM_VENV) (pip install -e ".[cpu,test,beam]"; ~1 minute the first time).
BEAM_VENV ?= .venv-beam
$(BEAM_VENV)/.installed-beam: setup.py
	test -x $(BEAM_VENV)/bin/python || $(PYTHON) -m venv $(BEAM_VENV)
	$(BEAM_VENV)/bin/python -m pip install --quiet -e ".[cpu,test,beam]"
	touch $@

test-beam: $(BEAM_VENV)/.installed-beam
	$(BEAM_VENV)/bin/python -m pytest tests/data_pipeline/test_beam.py \
	  tests/data_pipeline/test_build_bytes.py $(ARGS)

# Benchmarks against peer implementations (creates their venvs under /tmp/peers
# first; takes tens of minutes). SUITE=S|M|bf16|input|data|beam|all, ARGS=--rounds 3 ...
# SUITE=quality: time to a held-out accuracy, ours vs Hugging Face on the same
# records (bench/time_to_quality.py, ~30 min on 2 cores; not in all); ARGS are
# its flags, e.g. ARGS="--plot /tmp/quality.png" or ARGS="--shape S".
SUITE ?= S
bench: install
	bash bench/peers/setup.sh
	$(BIN)/python -m bench.run --suite $(SUITE) $(ARGS)

clean:
	rm -rf $(VENV) .venv-tf* $(BEAM_VENV) *.egg-info build dist runs .pytest_cache
