# airflow-mesh: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
STACK := $(PY) stack/stack.py
DEMO_HOME := .stack/airflow
# Services that `make test` / `make demo` started themselves, and so stop at the end.
STARTED := .stack/run/started-by-make

.PHONY: install chromium up down status test unit lint demo lock clean

$(INSTALLED): pyproject.toml requirements/airflow.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q uv
	$(PY) -m uv pip install --python $(PY) --compile-bytecode -r requirements/airflow.lock
	$(PY) -m uv pip install --python $(PY) --no-deps -e .
	touch $(INSTALLED)

install: $(INSTALLED) chromium  ## the Airflow virtualenv with airflow-mesh installed (editable), and Chromium

# Debian's Chromium, which the UI test drives with Playwright (never `playwright install`: it downloads browsers).
chromium:
	@command -v chromium >/dev/null && exit 0; \
	if [ "$$(id -u)" -ne 0 ]; then \
		echo "missing Debian package chromium (the UI test needs it): run \`sudo apt-get install chromium fonts-liberation\`" >&2; exit 0; \
	fi; \
	echo "installing Debian packages: chromium fonts-liberation"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -q && apt-get install -y -q --no-install-recommends chromium fonts-liberation

up: install  ## start the local stack (idempotent) and wait until every service is healthy
	@$(STACK) up

down:  ## stop what `make up` started
	@if [ -x $(PY) ]; then $(STACK) down; else python3 stack/stack.py down; fi

status:
	@$(STACK) status || true

unit: install  ## unit tests only: no services needed
	$(PY) -m pytest -m "not integration" tests

lint: install  ## the project's rules: ruff (style, bugs), mypy (types), import-linter (layering); no services needed
	status=0; \
	$(PY) -m ruff check airflow_mesh tests dags benchmarks stack || status=1; \
	$(PY) -m mypy || status=1; \
	$(VENV)/bin/lint-imports || status=1; \
	exit $$status

test: install  ## the whole suite against the real stack; stops what it started
	$(STACK) up --started-file $(STARTED)
	status=0; $(PY) -m pytest tests || status=$$?; \
	$(STACK) down --started-file $(STARTED); exit $$status

demo: install  ## the demo pipeline through the real stack, step by step; the stack stays up
	@$(STACK) up
	@set -a; . .stack/connections.env; set +a; \
	export AIRFLOW_HOME=$(CURDIR)/$(DEMO_HOME) AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags; \
	$(PY) -m airflow db migrate > .stack/logs/demo.log 2>&1 && \
	$(PY) dags/mesh_demo.py >> .stack/logs/demo.log 2>&1; status=$$?; \
	grep -E '^(step [0-9]|mesh_demo finished)' .stack/logs/demo.log; \
	if [ $$status -ne 0 ]; then tail -40 .stack/logs/demo.log; fi; \
	echo "full log: .stack/logs/demo.log; Flink UI: http://127.0.0.1:8081; stop the stack with: make down"; exit $$status

lock:  ## re-resolve the locked dependency sets after changing pyproject.toml or requirements/flink.in
	$(PY) -m uv pip compile pyproject.toml --extra test --extra lint --python-version 3.11 -o requirements/airflow.lock
	$(PY) -m uv pip compile requirements/flink.in --python-version 3.11 -o requirements/flink.lock

clean: down  ## remove everything the stack and the virtualenv wrote (also the databases' data outside .stack/)
	@if [ -x $(PY) ]; then $(STACK) clean; else python3 stack/stack.py clean; fi
	rm -rf .stack $(VENV)
