# `make run` sets up .venv (first time: ~10 min, llama-cpp-python compiles) and starts Doppel.
# `make test` sets up the same environment plus test tools and runs the whole suite.
VENV := .venv
STAMP := $(VENV)/.setup-done
DEV_STAMP := $(VENV)/.setup-dev-done
SETUP_INPUTS := pyproject.toml packaging/models.txt packaging/apt-packages.txt packaging/setup.sh

.PHONY: run test setup lint bench doctor clean

$(STAMP): $(SETUP_INPUTS)
	packaging/setup.sh .
	touch $@

$(DEV_STAMP): $(SETUP_INPUTS)
	packaging/setup.sh ".[dev,server]"
	touch $(STAMP) $@

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/doppel

test: $(DEV_STAMP)
	QT_QPA_PLATFORM=offscreen $(VENV)/bin/python -m pytest -q

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check app tests
	$(VENV)/bin/ruff format --check app tests

doctor: $(STAMP)
	$(VENV)/bin/doppel doctor

bench: $(STAMP)
	$(VENV)/bin/doppel bench

clean:
	rm -rf $(VENV) build dist *.egg-info
