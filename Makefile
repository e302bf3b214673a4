# Sift: `make run` to try it, `make test` for the whole suite.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

# `make run` is the embedded set-up: SQLite and a file-system broker, nothing else to start.
# It serves as production does, DEBUG off (Sift's own 404 and 500 pages, never Django's debug
# page), with a secret key generated once into var/, over plain http on this machine only.
# `make run RUN_DEBUG=1` shows Django's debug pages instead.
RUN_DEBUG ?= 0
RUN_KEY := var/secret_key
DEV_ENV := DEBUG=$(RUN_DEBUG) SECRET_KEY="$$(cat $(RUN_KEY))" ALLOWED_HOSTS=127.0.0.1,localhost \
	SIFT_SECURE_COOKIES=0 SIFT_HSTS_SECONDS=0
# The suite runs on the real PostgreSQL and Redis of this machine (override to point elsewhere).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
TEST_ENV := SECRET_KEY=test-only-secret DEBUG=0 DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL)

.PHONY: install run test lint format chromium bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $@

run: install $(RUN_KEY)
	$(DEV_ENV) $(PY) manage.py migrate --no-input
	@# With DEBUG off WhiteNoise serves the collected files (htmx, the stylesheet, ReDoc).
	$(DEV_ENV) $(PY) manage.py collectstatic --no-input -v0
	$(DEV_ENV) $(PY) manage.py seed_demo
	@echo "Sift is starting on http://127.0.0.1:8000 (Ctrl+C stops the web server and the workers)"
	@# Two workers: head retrains never wait behind a fine-tune, which runs at the lowest CPU priority.
	@$(DEV_ENV) sh -c '$(PY) -m celery -A config worker -Q celery -n retrain@%h --loglevel=info --concurrency=1 & retrain=$$!; \
		nice -n 10 $(PY) -m celery -A config worker -Q gpu -n finetune@%h --loglevel=info --concurrency=1 & finetune=$$!; \
		trap "kill $$retrain $$finetune 2>/dev/null" EXIT INT TERM; \
		$(PY) manage.py runserver 127.0.0.1:8000'

$(RUN_KEY):
	mkdir -p $(dir $@)
	$(PY) -c "import secrets; print(secrets.token_urlsafe(50))" > $@
	chmod 600 $@

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "Installing Debian's chromium for the browser tests"; \
		apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

test: install chromium lint
	$(TEST_ENV) $(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(TEST_ENV) $(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	$(TEST_ENV) $(PY) bench/bench_queue.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
