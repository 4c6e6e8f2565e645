"""gunicorn settings of the prediction service.

Run: `gunicorn -c app/gunicorn_conf.py 'app:create_app()'` (what `make serve` does).

Environment: HOST (127.0.0.1), PORT (5000), WEB_CONCURRENCY (2 workers), WEB_WORKER_CLASS
(gevent; or sync, gthread), WEB_THREADS (1; threads per gthread worker), STROKE_ACCESS_LOG
("-" = stdout, "" = off), LOG_LEVEL (info), PROMETHEUS_MULTIPROC_DIR (default: a fresh
temporary directory).

The app is preloaded: the master verifies and loads the model once, so a bad artifact
stops the server before any worker starts (one "Error: ..." line, exit status 1), and
the workers share the model's memory copy-on-write (gc.freeze() before each fork keeps
the garbage collector off those pages).

Prometheus multiprocess mode: the directory is set up here, before prometheus_client is
imported, and removed on exit; child_exit marks a dead worker so its live gauges vanish
(its counters stay, so totals never go backwards).
"""

from __future__ import annotations

import atexit
import gc
import glob
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from typing import Any

from gunicorn import util as gunicorn_util
from gunicorn.glogging import Logger

# BLAS/OpenMP pools sized for one request per worker: with 2 workers on 2 cores, more
# threads only contend. Must be set before numpy is imported (the app import, later).
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

_CREATED_DIR_MARKER = "STROKE_PROMETHEUS_DIR_CREATED"
_MASTER_PID = os.getpid()


def _remove_created_dir() -> None:
    """Remove the multiprocess directory this file created (never an operator's own).

    Runs from on_exit and, for a server that failed to start, from atexit; forked
    workers inherit the atexit hook, hence the pid check.
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if os.getpid() == _MASTER_PID and os.environ.get(_CREATED_DIR_MARKER) == "1" and directory:
        shutil.rmtree(directory, ignore_errors=True)


if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="stroke-prometheus-")
    os.environ[_CREATED_DIR_MARKER] = "1"
    atexit.register(_remove_created_dir)
elif not os.environ.get(_CREATED_DIR_MARKER):
    # A directory given by the operator may hold files of an earlier run: start clean.
    # (gunicorn re-reads this file on HUP; the marker stops a wipe under live workers.)
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
    for _stale in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.remove(_stale)
    os.environ[_CREATED_DIR_MARKER] = "0"


def _settings() -> Any:
    """Return the service settings (app/settings.py); exit with one line when invalid."""
    from app.settings import Settings, SettingsError

    try:
        return Settings.from_env()
    except SettingsError as error:
        sys.exit(f"Error: {error}")


_service = _settings()
# create_app runs in this master before the fork: per-process threads (the prediction
# log's retention timer) start in the workers (app/monitoring.py).
os.environ["STROKE_FORKING_SERVER"] = "1"

bind = f"{_service.host}:{_service.port}"
workers = _service.workers
threads = _service.threads
# gevent (default): a worker reads requests cooperatively, so clients that send slowly
# (or keep idle connections open) wait in the worker without blocking the others; the
# app's work is CPU-bound and runs one request at a time per worker, as under sync.
# WEB_THREADS > 1 with the sync class means gthread (as before WEB_WORKER_CLASS existed).
worker_class = _service.worker_class
if threads > 1 and worker_class == "sync":
    worker_class = "gthread"
worker_connections = 1000
preload_app = True
# gunicorn's control socket defaults to one path per user ($HOME/.gunicorn/gunicorn.ctl),
# which several servers on one machine (tests, benchmarks) would fight over.
control_socket_disable = True
timeout = 30
graceful_timeout = 10
keepalive = 5
loglevel = _service.log_level
errorlog = "-"
# STROKE_ACCESS_LOG: "-" (stdout, default), a file, or "off" / empty for none.
_access = os.environ.get("STROKE_ACCESS_LOG", _service.access_log).strip()
accesslog = None if _access.lower() in {"", "off", "none"} else _access
# Path without the query string, status, size and time: never request bodies, data or
# the client's address (personal data under the GDPR; a proxy in front may log it).
ACCESS_LOG_FORMAT = '"%(m)s %(U)s" %(s)s %(B)s %(M)sms'
access_log_format = ACCESS_LOG_FORMAT


class AccessLogger(Logger):
    """gunicorn's logger, with the access line's fields computed cheaply.

    gunicorn builds ~60 atoms per request (every header and environ variable, a
    strftime) for any format: ~0.1 ms a request. For this file's format only its six
    fields are computed; any other format (e.g. --access-logformat) gets gunicorn's own.
    The error log drops the client address gunicorn puts in its "Invalid request" lines.
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.error_log.addFilter(_drop_client_address)

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> Any:
        if self.cfg.access_log_format != ACCESS_LOG_FORMAT:
            return super().atoms(resp, req, environ, request_time)
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        return {
            "m": environ.get("REQUEST_METHOD"),
            "U": environ.get("PATH_INFO"),
            "s": status,
            "B": getattr(resp, "sent", None),
            "M": request_time.seconds * 1000 + request_time.microseconds // 1000,
        }


_CLIENT_ADDRESS = re.compile(r" from ip=[^:]*:")


def _drop_client_address(record: logging.LogRecord) -> bool:
    """Logging filter: "Invalid request from ip=1.2.3.4: ..." -> "Invalid request: ..."."""
    if isinstance(record.msg, str) and " from ip=" in record.msg:
        record.msg = _CLIENT_ADDRESS.sub(":", record.msg)
    return True


def write_json_error(sock: Any, status_int: int, reason: str, message: str) -> None:
    """gunicorn's own error answer (a request it cannot parse) as the app's JSON error.

    Replaces gunicorn.util.write_error, which answers in HTML; the base worker's
    handle_error calls it for malformed request lines, headers and methods.
    """
    body = json.dumps(
        {"error": reason.lower(), "details": [{"field": "(request)", "message": message[:200]}]},
        ensure_ascii=True,
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        "Content-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n"
        f"Cache-Control: no-store\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    gunicorn_util.write_nonblock(sock, head.encode("latin-1") + body)


gunicorn_util.write_error = write_json_error
logger_class = AccessLogger
# Bound request headers; bodies are bounded by the app (STROKE_MAX_BODY_BYTES).
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190

# The app's own log lines (model loaded, warnings) in gunicorn's format, on stderr.
_app_logger = logging.getLogger("app")
if not _app_logger.handlers:
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(
        logging.Formatter(
            "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",
            "%Y-%m-%d %H:%M:%S %z",
        )
    )
    _app_logger.addHandler(_handler)
    _app_logger.setLevel(loglevel.upper())
    _app_logger.propagate = False


def on_starting(server: Any) -> None:
    """Refuse to serve beyond loopback without credentials, whatever the bind (-b too)."""
    from app.auth import bind_hosts, check_auth_mode
    from app.settings import SettingsError

    try:
        check_auth_mode(_service, bind_hosts(server.cfg.bind))
    except SettingsError as error:
        sys.exit(f"Error: stroke-risk server cannot start: {error}")


def pre_fork(server: Any, worker: Any) -> None:
    """Freeze the preloaded objects (model, libraries) out of the garbage collector.

    Workers' collections then skip them: a 10,000-record answer allocates enough objects
    to trigger full collections, which otherwise walk the whole preloaded heap (~40 ms),
    and the pages stay shared copy-on-write instead of being touched by the collector.
    """
    gc.freeze()


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges from the Prometheus multiprocess directory."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def worker_exit(server: Any, worker: Any) -> None:
    """Write the worker's buffered prediction-log records before it exits.

    A gevent worker then leaves at once with the status gunicorn chose (the SystemExit
    in flight): the interpreter's own shutdown of a monkey-patched process only prints
    "Exception ignored" tracebacks from logging's weakref callbacks. (gunicorn also calls
    this hook in the master for a worker that vanished: nothing is done there.)
    """
    if os.getpid() != worker.pid:
        return
    prediction_writer = sys.modules.get("app.prediction_writer")
    if prediction_writer is not None:
        prediction_writer.flush_all()
    leaving = sys.exc_info()[1]
    if worker_class == "gevent" and isinstance(leaving, SystemExit):
        code = leaving.code if isinstance(leaving.code, int) else 0 if leaving.code is None else 1
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code & 0xFF)


def on_exit(server: Any) -> None:
    """Clean up the Prometheus multiprocess directory when the master stops."""
    _remove_created_dir()
