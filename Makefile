# `make run` sets up .venv (packaging/setup.sh: llama.cpp compiles once per machine into a shared wheel
# cache, ~4 min on 2 cores; a later clone sets up in under a minute) and starts Doppel.
# `make test` sets up the same environment plus test tools and runs the whole suite.
VENV := .venv
STAMP := $(VENV)/.setup-done
DEV_STAMP := $(VENV)/.setup-dev-done
PKG_STAMP := $(VENV)/.setup-packaging-done
SETUP_INPUTS := pyproject.toml packaging/models.txt packaging/apt-packages.txt packaging/setup.sh $(wildcard packaging/llama-patches/*.patch)

.PHONY: run test setup lint bench doctor clean package package-test install-desktop

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

# Packaging (packaging/README.md): a one-folder build in dist/doppel, then its --self-test offline.
# The build runs niced (it is CPU-heavy and others may be measuring latency); the self-test is not.
BUILD_NICE ?= nice -n 15
# No network for the self-test: a fresh network namespace where allowed (root, or user namespaces),
# else at least no proxies.
OFFLINE = $(shell if unshare -n true 2>/dev/null; then echo "unshare -n"; \
	elif unshare -rn true 2>/dev/null; then echo "unshare -rn"; \
	else echo "env -u http_proxy -u https_proxy -u HTTP_PROXY -u HTTPS_PROXY -u all_proxy -u ALL_PROXY"; fi)

$(PKG_STAMP): $(SETUP_INPUTS)
	packaging/setup.sh ".[packaging]"
	touch $(STAMP) $@

package: $(PKG_STAMP)
	@start=$$(date +%s); \
	$(BUILD_NICE) $(VENV)/bin/pyinstaller --noconfirm --log-level WARN --distpath dist --workpath build \
		packaging/doppel.spec && \
	echo "package: dist/doppel built in $$(( $$(date +%s) - start )) s, $$(du -sh dist/doppel | cut -f1)"

package-test: package
	cd /tmp && QT_QPA_PLATFORM=offscreen $(OFFLINE) $(CURDIR)/dist/doppel/doppel --self-test

install-desktop:
	packaging/install-desktop.sh $(CURDIR)/dist/doppel

clean:
	rm -rf $(VENV) build dist *.egg-info
