# Two commands do all set-up on a fresh machine (Python 3.11, Debian, root or sudo-less root):
#   make run   - create .venv if needed, run the pipeline (dvc repro), print the metrics
#   make test  - same set-up plus system tools for the tests, then lint and the whole suite
VENV := .venv
PYTHON ?= python3
STAMP := $(VENV)/.requirements-installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export PYTHONDONTWRITEBYTECODE := 1
# Debian packages the tests drive for real: Prometheus/promtool, Chromium, wrk.
SYSTEM_PACKAGES := prometheus chromium wrk

.PHONY: run test serve lint format system-deps benchmark clean-venv

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

run: $(STAMP)
	dvc repro
	dvc metrics show

system-deps:
	@missing=""; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

lint: $(STAMP)
	ruff check .
	ruff format --check .
	mypy

test: $(STAMP) system-deps lint
	dvc repro
	STROKE_TEST_ARTIFACTS=1 python -m pytest

serve: $(STAMP)
	gunicorn -c app/gunicorn_conf.py 'app:create_app()'

benchmark: $(STAMP)
	python -m benchmarks.pipeline
	python -m benchmarks.serving

format: $(STAMP)
	ruff format .
	ruff check --fix .

clean-venv:
	rm -rf $(VENV)
