# Two commands do all set-up on a fresh machine (Python 3.11, Debian, root or sudo-less root):
#   make run   - create .venv from the pipeline lock, run the pipeline (dvc repro), print a summary
#   make test  - .venv from the development lock, system tools for the tests, lint, the suite
#                but its `scenario` tests (make test-scenarios; make test-all runs everything)
#   make check - the quick loop while editing: lint + the tests that run in pytest's own
#                processes, starting no program, server or process (pytest -m "not integration")
VENV := .venv
PYTHON ?= python3
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
# Every Python process make starts (the stages under dvc, the tests and what they start, the
# service) caches bytecode in one folder inside .venv, none in the tree: uv installs packages
# without it, and a process that cannot write it recompiles what it imports (~2 s for
# scikit-learn and pandas) every time it starts.
export PYTHONPYCACHEPREFIX := $(CURDIR)/$(VENV)/pycache
# (a PYTHONDONTWRITEBYTECODE in the caller's environment, as CI machines often set, would
# keep that folder empty and every process compiling)
unexport PYTHONDONTWRITEBYTECODE
# Debian packages the tests drive for real: Prometheus/promtool, Chromium, wrk, PostgreSQL
# (shared MLflow tracking and Optuna studies), shellcheck (the PR workflow's lint).
# The one command that regenerates the three locks (see README "Environment").
UV_COMPILE := uv pip compile --python-version 3.11 --no-header --quiet

.PHONY: run test test-scenarios test-all check serve lint format system-deps benchmark clean-venv lock push pull restore \
	sync copy-runs plots-diff exp notebook pr-report release rollback release-history compare exps \
	tracking-server demo drift-report collect-labels labels-demo

# The locks are installed by uv (pinned in requirements/dev.txt, bootstrapped by pip): it
# installs the ~300 pinned packages from its cache in seconds where pip takes minutes, which
# is most of `make test`'s set-up on a machine that has installed them once.
UV_VERSION := $(shell sed -n 's/^uv==//p' requirements/dev.txt)
UV_INSTALL := $(VENV)/bin/uv pip install --quiet --python $(VENV)/bin/python

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet uv==$(UV_VERSION)

# requirements.txt: every package of the pipeline and the service, pinned (a uv lock).
# requirements/s3.txt: the S3 clients, locked apart (see requirements/s3.in) and installed without
# their declared python-dateutil<3.
$(RUNTIME_STAMP): requirements.txt requirements/s3.txt | $(VENV)/bin/python
	$(UV_INSTALL) -r requirements.txt
	$(UV_INSTALL) --no-deps -r requirements/s3.txt
	touch $@

# requirements/dev.txt: the same pins plus the test and lint tools.
$(DEV_STAMP): requirements/dev.txt requirements.txt requirements/s3.txt | $(VENV)/bin/python
	$(UV_INSTALL) -r requirements/dev.txt
	$(UV_INSTALL) --no-deps -r requirements/s3.txt
	touch $@ $(RUNTIME_STAMP)

run: $(RUNTIME_STAMP)
	dvc repro
	python -m stroke_risk.commands.mlflow_runs sync
	@echo
	@python -m stroke_risk.commands.summary

# The DVC remote (default: a local directory, see .dvc/config), run cache included.
push: $(RUNTIME_STAMP)
	python -m stroke_risk.commands.dvc_remote push

pull: $(RUNTIME_STAMP)
	python -m stroke_risk.commands.dvc_remote pull

# Back to the last committed params and outputs after a failed or unwanted run, or after
# `git checkout REV`: outputs missing from the cache come from the remote, else `dvc repro`.
restore: $(RUNTIME_STAMP)
	python -m stroke_risk.commands.dvc_remote restore

# Make sure the workspace's model revision is in MLflow (a no-op when it is).
sync: $(RUNTIME_STAMP)
	python -m stroke_risk.commands.mlflow_runs sync

# Copy this clone's MLflow runs (mlflow.db) to another store, e.g. the shared server, with
# their names, tags, params, metrics, artifacts and registered versions; runs (model
# revisions) already there are skipped, so it can be rerun: make copy-runs TO=http://host:5001
TO ?=
copy-runs: $(RUNTIME_STAMP)
	@test -n "$(TO)" || { echo "usage: make copy-runs TO=http://host:5001" >&2; exit 2; }
	python -m stroke_risk.commands.mlflow_runs copy --to '$(TO)'

system-deps:
	@missing=""; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v shellcheck >/dev/null || missing="$$missing shellcheck"; \
	command -v amtool >/dev/null || missing="$$missing prometheus-alertmanager"; \
	command -v nginx >/dev/null || test -x /usr/sbin/nginx || missing="$$missing nginx-light"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# The same checks as the pre-commit hooks (.pre-commit-config.yaml), so CI and the hook agree.
lint: $(DEV_STAMP)
	ruff check .
	ruff format --check .
	mypy
	nbstripout --verify --keep-id notebook/*.ipynb
	python -m tools.consistency  # includes the import layers of pyproject.toml (lint-imports)

# The suite runs on TEST_WORKERS pytest-xdist workers; --dist loadfile keeps each test file on
# one worker, so its module fixtures are built once (tests/conftest.py orders the files).
# TEST_WORKERS=0 runs it in this one process.
TEST_WORKERS ?= 2
PYTEST_PARALLEL = -n $(TEST_WORKERS) --dist loadfile

# make test: everything but the `scenario` tests (whole journeys: a pipeline run and committed,
# a release, the tracking stack, several servers together, the demos; tens of seconds each),
# which make test-scenarios runs; make test-all runs both in one pytest session.
# The lint checks (mostly mypy, one core) run beside `dvc repro`, whose one-process stages leave
# the other core idle; lint's output is printed when both are done, and either failing fails.
test: $(DEV_STAMP) system-deps
	@log=$$(mktemp); $(MAKE) --no-print-directory lint > $$log 2>&1 & lint=$$!; \
	dvc repro; repro=$$?; wait $$lint; linted=$$?; cat $$log; rm -f $$log; \
	test $$linted -eq 0 || echo "make test: the lint checks failed (above)" >&2; \
	test $$repro -eq 0 -a $$linted -eq 0
	STROKE_TEST_ARTIFACTS=1 python -m pytest $(PYTEST_PARALLEL) -m "not scenario" --durations=10

test-scenarios: $(DEV_STAMP) system-deps
	dvc repro
	STROKE_TEST_ARTIFACTS=1 python -m pytest $(PYTEST_PARALLEL) -m scenario --durations=10

test-all: $(DEV_STAMP) system-deps lint
	dvc repro
	STROKE_TEST_ARTIFACTS=1 python -m pytest $(PYTEST_PARALLEL) --durations=15

check: $(DEV_STAMP) lint
	python -m pytest $(PYTEST_PARALLEL) -m "not integration" -q --hypothesis-profile=check

serve: $(RUNTIME_STAMP)
	gunicorn -c app/gunicorn_conf.py 'app:create_app()'

# What a change did, for a pull request: a verdict (which headline metrics changed beyond noise,
# paired tests with CIs), then model, tuned hyper-parameters, raw metrics, params and overlaid
# plots of BASE and the workspace, rendered offline (pr-report.md + pr-report/).
BASE ?= main
pr-report: $(RUNTIME_STAMP)
	python -m stroke_risk.commands.pr_report --base $(BASE) --out pr-report.md

# `dvc plots diff` of BASE and the workspace (ROC, PR, calibration, confusion, decision
# curve, importance overlaid), drawn offline: dvc_plots/diff/index.html (git-ignored).
plots-diff: $(RUNTIME_STAMP)
	@git rev-parse --verify --quiet '$(BASE)^{commit}' >/dev/null || \
	  { echo "make plots-diff: BASE=$(BASE) is not a branch, tag or commit here" >&2; exit 2; }
	@mkdir -p dvc_plots  # dvc creates the last folder of --out only
	dvc plots diff '$(BASE)' --out dvc_plots/diff

# `dvc exp run` with its -S overrides checked first (one line per unknown key, group option
# or bad value): make exp ARGS="-n xgb -S model=xgboost"
ARGS ?=
exp: $(RUNTIME_STAMP)
	python -m stroke_risk.commands.exp_run run $(ARGS)

# The experiments of the last COMMITS commits, each block under its baseline commit: the params
# each changed first (never hidden), then family, CV and test ROC-AUC, recall/specificity at the
# threshold; fits 100 columns. Older experiments: dvc exp list -A, or COMMITS=50.
COMMITS ?= 5
exps: $(RUNTIME_STAMP)
	python -m stroke_risk.commands.exps --commits $(COMMITS)

# One table of the baselines and experiments of the last COMMITS commits (family, CV ROC-AUC
# ± sd, nested CV when present, test ROC-AUC with CI, recall/specificity at the threshold), and
# paired tests of each experiment against its baseline commit, threshold metrics included;
# EXPS="name1 name2" limits it to those experiments (and their baselines).
EXPS ?=
compare: $(RUNTIME_STAMP)
	python -m stroke_risk.commands.compare $(EXPS) --commits $(COMMITS) --output comparison.md

# Release the checked-out model: refuses unless the tree and `dvc status` are clean, the
# outputs are pushed and every gate of conf/release/gates.yaml passes (OVERRIDE="reason"
# releases anyway, recording why); tags git, moves MLflow @production, records it in
# CHANGELOG.md, releases.json and the audit trail releases_audit.jsonl.
# MODEL=updated releases the update stage's models/updated/ (an accepted recalibration from
# outcome labels), gated on its held-out labels (README "Outcome labels").
# The reasons travel in the environment (make exports command-line variables), so quotes in
# them are safe.
release: $(RUNTIME_STAMP)
	@test -n "$(VERSION)" || { echo "usage: make release VERSION=1.2.0 [MODEL=updated] [OVERRIDE=\"reason\"]" >&2; exit 2; }
	python -m stroke_risk.commands.release release $(VERSION) $(if $(MODEL),--model $(MODEL)) $(if $(OVERRIDE),--override "$$OVERRIDE")

# Move @production back to the previous release (TO=1.0.0 for another), recorded like a release.
rollback: $(RUNTIME_STAMP)
	python -m stroke_risk.commands.release rollback $(if $(TO),--to $(TO)) $(if $(REASON),--reason "$$REASON")

# Every move of @production: when, who, from, to, why.
release-history: $(RUNTIME_STAMP)
	python -m stroke_risk.commands.release history

# Outcome labels (README "Outcome labels"): the labelled predictions of the service's log
# (STROKE_MONITOR_DB, default var/monitoring/predictions.sqlite; or the PostgreSQL log of
# STROKE_MONITOR_DATABASE_URL) merged into data/outcomes/
# (0700/0600, tracked by data/outcomes.dvc with push: false); then `dvc repro update` or
# `dvc exp run` validates the model on them and applies the change-control plan.
# ALLOW_PUSH=1 lets `dvc push` copy them (only to a remote approved for patient data).
collect-labels: $(RUNTIME_STAMP)
	python -m stroke_risk.commands.collect_labels $(if $(DB),--db '$(DB)') $(if $(ALLOW_PUSH),--allow-push)

# The outcome-label loop once on a real service: scores, labels, collects, validates, updates
# (everything in a temporary directory; README "Outcome labels").
labels-demo: $(RUNTIME_STAMP)
	python -m monitoring.labels_demo

# Executes the demo notebook against a running service (make serve in another shell);
# the result, with every output, is notebook/demo.executed.ipynb (git-ignored).
API_URL ?= http://127.0.0.1:5000
notebook: $(DEV_STAMP)
	STROKE_API_URL=$(API_URL) python -m tools.run_notebook notebook/demo.ipynb notebook/demo.executed.ipynb

benchmark: $(DEV_STAMP)
	python -m benchmarks.pipeline
	python -m benchmarks.serving
	python -m benchmarks.prediction_log
	dvc repro featurize
	python -m benchmarks.tuning

# Batch scoring with mlflow.pyfunc.spark_udf in local mode against the service's answers
# (benchmarks/spark_batch.py); installs pyspark and needs Java 17+ (apt-get install
# openjdk-17-jre-headless), which `make test` does not.
spark-benchmark: $(DEV_STAMP)
	$(UV_INSTALL) -r requirements/spark.txt
	python -m benchmarks.spark_batch

# The monitoring demo: service, real Prometheus with the repo's alert rules and drifted
# traffic on free ports; prints URLs, drift figures and pending alerts; Ctrl-C stops it.
# ALERT_DEMO=1: every rule's for: shortened to 10 s, a real Alertmanager and a webhook
# receiver, so drift alerts go pending, fire and are delivered (printed).
ALERT_DEMO ?=
demo: $(RUNTIME_STAMP) system-deps
	python -m monitoring.demo $(if $(ALERT_DEMO),--fire)

# An offline HTML drift report against the training reference, of a CSV file
# (make drift-report DATA=new.csv) or of a window of the service's prediction log
# (make drift-report SINCE=24h [UNTIL=...] [LOG=...]); written to OUT.
DATA ?=
LOG ?=
SINCE ?=
UNTIL ?=
OUT ?= drift-report.html
drift-report: $(RUNTIME_STAMP)
	python -m stroke_risk.commands.drift_report --out '$(OUT)' $(if $(DATA),--data '$(DATA)',--log \
	  '$(or $(LOG),$(STROKE_MONITOR_DB),var/monitoring/predictions.sqlite)' \
	  $(if $(SINCE),--since '$(SINCE)') $(if $(UNTIL),--until '$(UNTIL)'))

# A shared MLflow tracking server on a local PostgreSQL (ARGS="--help" for the options).
tracking-server: $(RUNTIME_STAMP)
	python -m stroke_risk.commands.tracking_server $(ARGS)

format: $(DEV_STAMP)
	ruff format .
	ruff check --fix .

# Regenerate the locks after editing requirements/*.in (needs network to PyPI).
lock: $(DEV_STAMP)
	cd requirements && $(UV_COMPILE) serving.in -o serving.txt
	cd requirements && $(UV_COMPILE) pipeline.in -c serving.txt -o ../requirements.txt
	cd requirements && $(UV_COMPILE) dev.in -c ../requirements.txt -o dev.txt
	cd requirements && $(UV_COMPILE) s3.in -c ../requirements.txt --override s3-overrides.txt -o s3.txt
	cd requirements && $(UV_COMPILE) spark.in -o spark.txt

clean-venv:
	rm -rf $(VENV)
