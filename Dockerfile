# Serving image of the stroke-risk API (gunicorn + Flask). Build from the repository root
# after `dvc repro` so the models/ files below, reports/metrics.json, reports/evaluation.json
# and dvc.lock exist:
#   docker build -t stroke-risk .
# Python matches the project's virtualenv (3.11.7); exact tag, slim Debian bookworm.
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STROKE_PROJECT_DIR=/srv/stroke-risk \
    STROKE_MONITOR_DB=/var/lib/stroke-risk/predictions.sqlite \
    HOST=0.0.0.0 \
    PORT=8000

WORKDIR /srv/stroke-risk

# Only the serving dependencies: requirements/serving.txt is the complete lock of what the
# server imports (no DVC, MLflow, Optuna or test tools), with the same pins as the pipeline.
COPY requirements/serving.txt ./requirements-serving.txt
RUN pip install --no-compile -r requirements-serving.txt && rm requirements-serving.txt

# An unprivileged user; it owns only the prediction log's directory.
RUN groupadd --system --gid 10001 stroke \
    && useradd --system --uid 10001 --gid stroke --no-create-home --shell /usr/sbin/nologin stroke \
    && mkdir -p /var/lib/stroke-risk \
    && chown stroke:stroke /var/lib/stroke-risk

COPY stroke_risk/ stroke_risk/
COPY app/ app/
# Only the data-only serving artifact and the JSON beside it: the pickled pipeline
# (models/model.joblib) is not in the image, so no file in it can run code when loaded.
COPY models/serving_model.npz models/model_metadata.json models/reference_profile.json models/
COPY reports/metrics.json reports/metrics.json
# The clinician page explains the threshold with the evaluation's sensitivity/specificity.
COPY reports/evaluation.json reports/evaluation.json
COPY dvc.lock ./
# Which release each model is (`make release` writes it; `[]` until the first release):
# /version and stroke_model_info report it, and its signatures are what STROKE_TRUSTED_KEY
# checks the model against.
COPY releases.json ./

USER stroke:stroke
VOLUME ["/var/lib/stroke-risk"]
EXPOSE 8000

# The slim image has no curl; Python's standard library is enough for a probe.
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status == 200 else 1)"]

# app/gunicorn_conf.py binds HOST:PORT (set above: all interfaces, as a container needs),
# preloads the app and sets up Prometheus multiprocess mode.
CMD ["gunicorn", "--config", "app/gunicorn_conf.py", "app:create_app()"]
