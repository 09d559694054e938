# All set-up lives here: `make demo` and `make test` work from a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
MODEL  ?= demo
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
# Keep preprocessing and the tiny models off OpenMP oversubscription on small machines.
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM ?= false
export HF_HUB_DISABLE_TELEMETRY ?= 1

# Partner packages with their own pyproject and tests; `make test` runs each one's suites.
INTEGRATIONS := integrations/langchain-internvl integrations/llama-index-llms-internvl integrations/llama-index-readers-internvl \
                integrations/llama-index-tools-internvl

.PHONY: install install-core demo test lint bench clean

# Two stamps: the demo needs only the core (+ PDF rendering), so a fresh `make demo` stays quick; everything else
# (extras, dev tools, the integration packages) is added on top by `make install`.
install-core: $(VENV)/.installed-core
install: $(VENV)/.installed

$(VENV)/.installed-core: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -c constraints.txt torch torchvision
	$(PIP) install -c constraints.txt -e '.[pdf]'
	touch $@

$(VENV)/.installed: $(VENV)/.installed-core $(foreach pkg,$(INTEGRATIONS),$(pkg)/pyproject.toml)
	$(PIP) install -c constraints.txt -e '.[all,dev]' $(foreach pkg,$(INTEGRATIONS),-e '$(pkg)[test]')
	touch $@

demo: install-core
	$(BIN)/python -m internvl_tools.demo --model '$(MODEL)'

test: install
	$(BIN)/ruff check internvl_tools tests benchmarks $(INTEGRATIONS)
	$(BIN)/ruff format --check internvl_tools tests benchmarks $(INTEGRATIONS)
	$(BIN)/python -m pytest tests internvl_tools --doctest-modules -n 2 --timeout 900 $(PYTEST_ARGS)
	cd integrations/langchain-internvl && ../../$(BIN)/python -m pytest tests/unit_tests --disable-socket --allow-unix-socket
	cd integrations/langchain-internvl && ../../$(BIN)/python -m pytest tests/integration_tests --timeout 900
	cd integrations/llama-index-llms-internvl && ../../$(BIN)/python -m pytest tests --timeout 900
	cd integrations/llama-index-readers-internvl && ../../$(BIN)/python -m pytest tests --timeout 900
	cd integrations/llama-index-tools-internvl && ../../$(BIN)/python -m pytest tests --timeout 900

lint: install
	$(BIN)/ruff check internvl_tools tests benchmarks $(INTEGRATIONS)
	$(BIN)/ruff format --check internvl_tools tests benchmarks $(INTEGRATIONS)

bench: install
	$(BIN)/python benchmarks/preprocess.py
	$(BIN)/python benchmarks/generate.py
	$(BIN)/python benchmarks/peer.py
	$(BIN)/python benchmarks/documents.py
	$(BIN)/python benchmarks/server.py
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python integrations/langchain-internvl/benchmarks/overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
