"""Static checks of Dockerfile, .dockerignore and docker-compose.yml (no Docker engine here)."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring.build_dashboards import DASHBOARD_DIR, render_all
from stroke_risk.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
MONITORING = REPO_ROOT / "monitoring"
COMPOSE_FILE = MONITORING / "docker-compose.yml"
APP_PORT = 8000


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (REPO_ROOT / "Dockerfile").read_text()
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    return [(item.split(None, 1)[0].upper(), item.split(None, 1)[1]) for item in logical]


def instructions(name: str) -> list[str]:
    return [args for instruction, args in dockerfile_instructions() if instruction == name]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


# --- Dockerfile ---------------------------------------------------------------------------


def test_base_image_is_a_pinned_slim_python_311() -> None:
    (base,) = instructions("FROM")
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base


def test_runs_as_an_unprivileged_user() -> None:
    users = instructions("USER")
    assert users, "no USER instruction"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert any("useradd" in args and user in args for args in instructions("RUN"))


def test_healthcheck_probes_health_on_the_app_port() -> None:
    (healthcheck,) = instructions("HEALTHCHECK")
    assert f"127.0.0.1:{APP_PORT}/health" in healthcheck
    assert "--interval=" in healthcheck and "--timeout=" in healthcheck


def test_runs_gunicorn_with_the_app_config_and_factory() -> None:
    (command,) = instructions("CMD")
    argv = json.loads(command)
    assert argv[0] == "gunicorn"
    assert argv[argv.index("--config") + 1] == "app/gunicorn_conf.py"
    assert argv[-1] == "app:create_app()"
    assert instructions("EXPOSE") == [str(APP_PORT)]


@pytest.mark.integration
def test_gunicorn_listens_on_all_interfaces_at_the_app_port(tmp_path: Path) -> None:
    """The address gunicorn binds when app/gunicorn_conf.py reads the image's ENV."""
    environment = dict(re.findall(r"(\w+)=(\S+)", " ".join(instructions("ENV"))))
    assert environment["HOST"] == "0.0.0.0"
    assert environment["PORT"] == str(APP_PORT)
    # The config file runs in a child (it sets up the Prometheus directory and atexit hooks).
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("STROKE_", "HOST"))}
    read_bind = "import runpy; print(runpy.run_path('app/gunicorn_conf.py')['bind'])"
    result = subprocess.run(
        [sys.executable, "-c", read_bind],
        cwd=REPO_ROOT,
        env={
            **inherited,
            "HOST": environment["HOST"],
            "PORT": environment["PORT"],
            "TMPDIR": str(tmp_path),
            "STROKE_MONITOR_DB": str(tmp_path / "predictions.sqlite"),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"0.0.0.0:{APP_PORT}"


def test_copies_exactly_the_serving_inputs() -> None:
    sources = {source for args in instructions("COPY") for source in args.split()[:-1]}
    assert sources == {
        "requirements/serving.txt",
        "stroke_risk/",
        "app/",
        # The data-only serving artifact and its JSON; never models/model.joblib (a pickle).
        "models/serving_model.npz",
        "models/model_metadata.json",
        "models/reference_profile.json",
        "reports/metrics.json",
        "reports/evaluation.json",
        "dvc.lock",
        "releases.json",
    }
    for source in ("requirements/serving.txt", "stroke_risk/", "releases.json"):
        assert (REPO_ROOT / source).exists(), source


def locked_packages(lock: str) -> dict[str, str]:
    """{normalised name: version} of a uv/pip-compile lock file."""
    pins = {}
    for line in (REPO_ROOT / lock).read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.strip().split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_image_installs_the_serving_lock_with_no_test_tools() -> None:
    (install,) = [args for args in instructions("RUN") if "requirements-serving" in args]
    assert "pip install" in install
    serving = locked_packages("requirements/serving.txt")
    for tool in ("pytest", "hypothesis", "playwright", "mypy", "ruff", "dvc", "mlflow", "optuna"):
        assert tool not in serving, f"{tool} must not be in the service image"


def test_serving_lock_agrees_with_the_pipeline_and_dev_locks() -> None:
    serving = locked_packages("requirements/serving.txt")
    for lock in ("requirements.txt", "requirements/dev.txt"):
        other = locked_packages(lock)
        differ = {name for name in serving if other.get(name) != serving[name]}
        assert not differ, f"{lock} pins {differ} differently from requirements/serving.txt"


def docker_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker reads it: anchored at the context root, `*` and `?`
    within one path segment, `**` across any number of them."""
    parts = re.split(r"(\*\*/?|\*|\?)", pattern.strip("/"))
    wildcards = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wildcards.get(p, re.escape(p)) for p in parts) + r"\Z")


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; '!' re-includes; a matched folder
    excludes what it holds."""
    excluded = False
    for raw in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        regex = docker_pattern(pattern.lstrip("!"))
        prefixes = [path] + [str(p) for p in Path(path).parents if str(p) != "."]
        if any(regex.match(p) for p in prefixes):
            excluded = not negate
    return excluded


@pytest.mark.parametrize(
    "path",
    [
        ".venv",
        ".git",
        "mlruns",
        "mlflow.db",
        "data/raw/brain.csv",
        ".dvc/cache",
        "var/x.sqlite",
        "app/__pycache__/x.pyc",
    ],
)
def test_dockerignore_keeps_local_state_and_data_out(path: str) -> None:
    assert dockerignore_excludes(path)


@pytest.mark.parametrize(
    "path",
    [
        "requirements.txt",
        "stroke_risk/data/schema.py",
        "stroke_risk/monitoring/drift.py",
        "app/settings.py",
        "models/serving_model.npz",
        "models/model_metadata.json",
        "reports/metrics.json",
        "dvc.lock",
    ],
)
def test_dockerignore_keeps_what_the_image_copies(path: str) -> None:
    assert not dockerignore_excludes(path)


# --- docker-compose.yml -------------------------------------------------------------------


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def test_compose_has_the_stack(compose: dict[str, Any]) -> None:
    assert {"app", "lb", "prometheus", "grafana", "alertmanager"} <= set(compose["services"])
    build = compose["services"]["app"]["build"]
    assert (COMPOSE_FILE.parent / build["context"] / build["dockerfile"]).resolve() == (
        REPO_ROOT / "Dockerfile"
    )


def test_compose_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image")
        if image and "build" not in service:
            assert re.search(r":v?\d+\.\d+\.\d+$", image), f"{name}: {image} is not pinned"


def test_the_replicas_get_credentials_and_one_session_key(compose: dict[str, Any]) -> None:
    """Bound to 0.0.0.0 in the image, a replica without credentials refuses to start."""
    app = compose["services"]["app"]
    environment = app["environment"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in app["volumes"]}
    for variable in ("STROKE_CREDENTIALS_FILE", "STROKE_SECRET_KEY_FILE"):
        folder = str(Path(environment[variable]).parent)
        assert folder in mounts, f"{variable} is not in a mounted folder"
        assert mounts[folder] == "./secrets" and (COMPOSE_FILE.parent / "secrets").is_dir()
    assert "STROKE_AUTH" not in environment  # never runs open


def test_every_bind_mount_source_exists(compose: dict[str, Any]) -> None:
    named = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (COMPOSE_FILE.parent / source).exists(), f"{name}: {source} missing"
            else:
                assert source in named, f"{name}: volume {source} not declared"


def test_prometheus_mount_provides_its_config_and_rules(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    config_flag = next(c for c in prometheus["command"] if c.startswith("--config.file="))
    config_in_container = Path(config_flag.split("=", 1)[1])
    host_dir = next(
        COMPOSE_FILE.parent / source
        for source, target in bind_mounts(prometheus)
        if Path(target) == config_in_container.parent
    )
    config_file = host_dir / config_in_container.name
    assert config_file.is_file()
    config = yaml.safe_load(config_file.read_text())
    for rule_file in config["rule_files"]:
        assert (host_dir / rule_file).is_file(), rule_file


def published_port(service: dict[str, Any]) -> int:
    host, container = str(service["ports"][0]).split(":")[-2:]
    assert host == container, "keep host and container ports equal for readable URLs"
    return int(container)


def exposed_port(service: dict[str, Any]) -> int:
    (port,) = service["expose"]
    return int(port)


TLS_PORT = 8443


@pytest.mark.integration
def test_only_the_load_balancer_publishes_a_port_with_tls(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {name for name, service in services.items() if service.get("ports")} == {"lb"}
    assert services["lb"]["ports"] == [f"{TLS_PORT}:{TLS_PORT}"]
    assert compose["networks"]["internal"]["internal"] is True
    for name in ("app", "prometheus", "alertmanager", "grafana"):
        assert services[name]["networks"] == ["internal"], name
    assert set(services["lb"]["networks"]) == {"edge", "internal"}
    tls = (MONITORING / "nginx" / "tls.conf").read_text()
    assert f"listen {TLS_PORT} ssl;" in tls
    mounts = dict((target, source) for source, target in bind_mounts(services["lb"]))
    assert (COMPOSE_FILE.parent / mounts["/etc/nginx/tls/tls.conf"]).resolve() == (
        MONITORING / "nginx" / "tls.conf"
    )
    assert (
        COMPOSE_FILE.parent / mounts["/etc/nginx/certs"]
    ).resolve() == REPO_ROOT / "deploy/certs"
    # The key and certificate never enter git.
    secrets = ["deploy/certs/tls.key", "deploy/certs/tls.crt", "monitoring/secrets/web.yml"]
    ignored = subprocess.run(
        ["git", "check-ignore", *secrets], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert ignored.stdout.split() == secrets


def test_ports_are_consistent(compose: dict[str, Any]) -> None:
    services = compose["services"]
    prometheus_config = yaml.safe_load((MONITORING / "prometheus" / "prometheus.yml").read_text())
    (alertmanager,) = prometheus_config["alerting"]["alertmanagers"][0]["static_configs"][0][
        "targets"
    ]
    assert alertmanager == f"alertmanager:{exposed_port(services['alertmanager'])}"
    listen = next(c for c in services["prometheus"]["command"] if "listen-address" in c)
    assert listen.endswith(f":{exposed_port(services['prometheus'])}")
    datasource = yaml.safe_load(
        (MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["url"] == f"http://prometheus:{exposed_port(services['prometheus'])}"
    assert exposed_port(services["grafana"]) == 3000


def test_prometheus_and_alertmanager_require_basic_auth(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("prometheus", "alertmanager"):
        flag = next(c for c in services[name]["command"] if c.startswith("--web.config.file="))
        target = Path(flag.split("=", 1)[1])
        mounts = {Path(t): COMPOSE_FILE.parent / s for s, t in bind_mounts(services[name])}
        assert mounts[target.parent].resolve() == (MONITORING / "secrets").resolve(), name
    # Their clients inside the stack sign in with the same user.
    config = yaml.safe_load((MONITORING / "prometheus" / "prometheus.yml").read_text())
    from monitoring.web_config import USER

    assert config["alerting"]["alertmanagers"][0]["basic_auth"]["username"] == USER
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "prometheus")
    assert job["basic_auth"]["username"] == USER
    datasource = yaml.safe_load(
        (MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["basicAuth"] is True and datasource["basicAuthUser"] == USER
    assert datasource["secureJsonData"]["basicAuthPassword"] == "$MONITORING_PASSWORD"
    assert services["grafana"]["environment"]["MONITORING_PASSWORD"].startswith(
        "${MONITORING_PASSWORD:?"
    )


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool: make system-deps")
def test_the_generated_web_config_passes_promtool_and_holds_no_password(tmp_path: Path) -> None:
    from monitoring.web_config import write_secrets

    password = "correct horse battery staple"
    web, password_file = write_secrets(tmp_path / "secrets", password)
    checked = subprocess.run(
        ["promtool", "check", "web-config", str(web)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert password not in web.read_text()
    (hashed,) = yaml.safe_load(web.read_text())["basic_auth_users"].values()
    import bcrypt

    assert bcrypt.checkpw(password.encode(), hashed.encode())
    assert not bcrypt.checkpw(b"wrong", hashed.encode())
    assert oct(web.stat().st_mode & 0o777) == oct(password_file.stat().st_mode & 0o777) == "0o600"
    # A broken hash is what promtool exists to catch: the check can fail.
    web.write_text(yaml.safe_dump({"basic_auth_users": {"monitoring": "not-a-hash"}}))
    broken = subprocess.run(["promtool", "check", "web-config", str(web)], capture_output=True)
    assert broken.returncode != 0


def self_signed_certificate(directory: Path) -> None:
    """What README "Deployment" tells an operator to run, into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-sha256", "-days", "2", "-nodes",
         "-subj", "/CN=stroke-risk", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(directory / "tls.key"), "-out", str(directory / "tls.crt")],
        check=True, capture_output=True,
    )  # fmt: skip


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx: apt-get install nginx-light")
def test_nginx_serves_tls_with_the_committed_config(tmp_path: Path) -> None:
    """nginx -t on nginx.conf + tls.conf with a generated certificate, then nginx for real on
    loopback: a TLS handshake with that certificate, and the balancer's own 404 for /metrics."""
    import ssl
    import time
    import urllib.error
    import urllib.request

    certs = tmp_path / "certs"
    self_signed_certificate(certs)
    port = free_port()
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "tls.conf").write_text(
        (MONITORING / "nginx" / "tls.conf")
        .read_text()
        .replace(f"listen {TLS_PORT} ssl;", f"listen 127.0.0.1:{port} ssl;")
        .replace("/etc/nginx/certs/", f"{certs}/")
    )
    text = NGINX_CONF.read_text()
    replacements = {
        "resolver 127.0.0.11 ": "resolver 127.0.0.1:53 ",
        "listen 8000;": "",  # only the TLS listener here
        "include /etc/nginx/tls/*.conf;": f"include {tmp_path}/tls/*.conf;",
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    temporary = "\n".join(
        f"    {kind}_temp_path {tmp_path / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = text.replace("http {\n", f"http {{\n{temporary}\n", 1)
    config = tmp_path / "nginx.conf"
    config.write_text(f"daemon off;\nuser root;\npid {tmp_path / 'nginx.pid'};\n{text}")
    command = ["nginx", "-p", str(tmp_path), "-c", str(config), "-e", str(tmp_path / "error.log")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        context = ssl.create_default_context(cafile=str(certs / "tls.crt"))
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"https://127.0.0.1:{port}/metrics", context=context)
            except urllib.error.HTTPError as error:
                assert error.code == 404  # nginx's own answer, over verified TLS
                assert "max-age=31536000" in error.headers.get("Strict-Transport-Security", "")
                break
            except urllib.error.URLError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        # Plain HTTP on the TLS port is refused by nginx, never proxied.
        with pytest.raises(urllib.error.HTTPError) as plain:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
        assert plain.value.code == 400
    finally:
        process.terminate()
        process.wait(timeout=10)


# --- replicas behind a load balancer -------------------------------------------------------

NGINX_CONF = MONITORING / "nginx" / "nginx.conf"


def nginx_directives(text: str) -> list[tuple[str, str]]:
    """(name, arguments) of every simple directive, comments dropped (no nesting kept)."""
    body = re.sub(r"#[^\n]*", "", text)
    return [
        (match[1], " ".join(match[2].split()))
        for match in re.finditer(r"([a-z_]+)\s+([^;{}]*);", body)
    ]


def test_app_runs_replicas_that_publish_no_port(compose: dict[str, Any]) -> None:
    app = compose["services"]["app"]
    assert app["deploy"]["replicas"] >= 2
    # A published host port or a container name would stop a second replica from starting.
    assert "ports" not in app and "container_name" not in app
    assert [str(port) for port in app["expose"]] == [str(APP_PORT)]


def test_replicas_share_one_prediction_log(compose: dict[str, Any]) -> None:
    app = compose["services"]["app"]
    log_path = Path(app["environment"]["STROKE_MONITOR_DB"])
    (volume,) = [v for v in app["volumes"] if Path(v.split(":")[1]) == log_path.parent]
    assert volume.split(":")[0] in compose["volumes"], "a named volume, shared by every replica"


def test_load_balancer_is_pinned_nginx_in_front_of_every_replica(compose: dict[str, Any]) -> None:
    lb = compose["services"]["lb"]
    assert re.fullmatch(r"nginx:\d+\.\d+\.\d+", lb["image"])
    mounts = dict((target, source) for source, target in bind_mounts(lb))
    assert (COMPOSE_FILE.parent / mounts["/etc/nginx/nginx.conf"]).resolve() == NGINX_CONF
    assert "app" in lb["depends_on"]
    directives = nginx_directives(NGINX_CONF.read_text())
    # Docker's DNS, re-resolved at run time through a variable: every replica, any N.
    assert ("resolver", "127.0.0.11 valid=10s ipv6=off") in directives
    assert ("set", f"$stroke_app app:{APP_PORT}") in directives
    assert ("proxy_pass", "http://$stroke_app") in directives
    assert ("listen", str(APP_PORT)) in directives
    assert ("proxy_request_buffering", "on") in directives
    assert ("proxy_set_header", "Host $http_host") in directives
    assert NGINX_CONF.read_text().count("{") == NGINX_CONF.read_text().count("}")


def test_prometheus_discovers_every_replica_by_dns(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((MONITORING / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "stroke-risk")
    assert "static_configs" not in job, "no hand-written target list"
    (discovery,) = job["dns_sd_configs"]
    assert discovery["names"] == ["app"] and "app" in compose["services"]
    assert discovery["type"] == "A" and discovery["port"] == APP_PORT
    assert "app" in compose["services"]["prometheus"]["depends_on"]


def test_every_alert_aggregates_over_replicas() -> None:
    """Alerts read N replicas as one service: no per-instance series, except one alert."""
    groups = yaml.safe_load((MONITORING / "prometheus" / "alert_rules.yml").read_text())
    for rule in (r for g in groups["groups"] for r in g["rules"] if "alert" in r):
        expr = " ".join(rule["expr"].split())
        if rule["alert"] == "StrokeReplicaDown":
            continue  # names the replica that is down, on purpose
        for selector in re.finditer(r"\b(stroke_[a-z_]+|up)\b(\{[^}]*\})?", expr):
            before = expr[: selector.start()]
            assert re.search(r"(sum|max|min|count|absent)( by \([^)]*\))? ?\((\w+\()?$", before), (
                rule["alert"],
                selector[0],
            )


def test_grafana_provider_path_is_the_mounted_dashboards_dir(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = {target: COMPOSE_FILE.parent / source for source, target in bind_mounts(grafana)}
    provisioning = mounts["/etc/grafana/provisioning"]
    assert (provisioning / "datasources").is_dir() and (provisioning / "dashboards").is_dir()
    for provider_file in (provisioning / "dashboards").glob("*.yml"):
        for provider in yaml.safe_load(provider_file.read_text())["providers"]:
            path = provider["options"]["path"]
            assert path in mounts, f"provider path {path} is not a mount target"
            # The mounted directory is where the generator writes the dashboards.
            assert mounts[path].resolve() == DASHBOARD_DIR.resolve()
            assert {p.name for p in mounts[path].glob("*.json")} == set(render_all())
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    home_dir, home_file = home.rsplit("/", 1)
    assert (mounts[home_dir] / home_file).is_file()


def test_no_secret_is_committed_in_compose(compose: dict[str, Any]) -> None:
    password = compose["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert password.startswith("${") and ":?" in password


# Import name -> distribution, where they differ (werkzeug comes with flask).
DISTRIBUTIONS = {
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "pydantic_settings": "pydantic-settings",
    "prometheus_client": "prometheus-client",
    "werkzeug": "flask",
    "xgboost": "xgboost-cpu",
    "flask_limiter": "flask-limiter",
}


def runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of a module that run: not those under `if TYPE_CHECKING:`."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(inner) for child in node.body for inner in ast.walk(child)}
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in skipped
    ]


def imported_top_level_modules(entry_dir: Path) -> set[str]:
    """Third-party modules imported by entry_dir's files and the stroke_risk modules they use."""
    seen: set[Path] = set()
    pending = sorted(entry_dir.glob("*.py"))
    third_party: set[str] = set()
    while pending:
        path = pending.pop()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        for node in runtime_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in ("app", "stroke_risk"):
                    pending.append(REPO_ROOT / (name.replace(".", "/") + ".py"))
                elif top not in sys.stdlib_module_names and top != "__future__":
                    third_party.add(top)
    return third_party


def test_image_installs_every_package_the_app_imports() -> None:
    serving = set(locked_packages("requirements/serving.txt"))
    needed = {DISTRIBUTIONS.get(m, m) for m in imported_top_level_modules(REPO_ROOT / "app")}
    # The model pickle needs the estimator's library even though no module imports it.
    needed |= {"scikit-learn", "xgboost-cpu", "joblib", "gunicorn"}
    assert needed <= serving, f"missing from the image: {needed - serving}"
