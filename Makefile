# Two commands for a newcomer: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# TensorFlow build: cpu (default), gpu or tpu. e.g. `make install TF_EXTRA=gpu`.
TF_EXTRA ?= cpu

.PHONY: install demo test test-all bench clean

install: $(STAMP)

# Then compiles the dynamic-masking kernel (needs g++; without it dynamic
# masking runs on TensorFlow ops: the same masks, several times slower).
$(STAMP): setup.py data_pipeline/native/dynamic_mask_op.cc
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(TF_EXTRA),test]"
	$(BIN)/python -m data_pipeline.native \
	  || echo "make: the dynamic-masking kernel did not build (above); dynamic masking will use TensorFlow ops"
	touch $(STAMP)

demo: install
	$(BIN)/python -m pretraining.demo $(ARGS)

test: install
	$(BIN)/python -m pytest $(ARGS)

# Also the `extended` tests (pytest.ini): about 3 minutes more.
test-all: install
	$(BIN)/python -m pytest -m "" $(ARGS)

# Benchmarks against peer implementations (creates their venvs under /tmp/peers
# first; takes tens of minutes). SUITE=S|M|bf16|input|all, ARGS=--rounds 3 ...
SUITE ?= S
bench: install
	bash bench/peers/setup.sh
	$(BIN)/python -m bench.run --suite $(SUITE) $(ARGS)

clean:
	rm -rf $(VENV) *.egg-info runs .pytest_cache
