"""The production deployment, checked without Docker: docker-compose.yaml, Dockerfile, .env.example,
deploy/postgres-init and the README's production section against each other, the package's pins and
the installed Airflow.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
AIRFLOW = Path(sys.executable).with_name("airflow")
INIT_SQL = ROOT / "deploy" / "postgres-init" / "01-carbon.sql"

# A compose reference ${NAME}, ${NAME:-default}, ${NAME:?error}; "$${X}" is an escaped "$" (the container's).
REFERENCE = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|FERNET|_KEY$|^KEY$|AUTH$", re.IGNORECASE)


def _production_section() -> str:
    readme = _text(ROOT / "README.md")
    start = readme.index("## Production")
    return readme[start:readme.index("\n## ", start + 1)]


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def raw() -> str:
    return _text(COMPOSE_FILE)


@pytest.fixture(scope="module")
def compose(raw) -> dict:
    return yaml.safe_load(raw)


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


def _makefile_airflow_version() -> str:
    match = re.search(r"^AIRFLOW_VERSION\s*:?=\s*(\S+)", _text(ROOT / "Makefile"), re.MULTILINE)
    assert match, "Makefile: no AIRFLOW_VERSION"
    return match.group(1)


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    return cfg


def _requirements(value: str) -> list[Requirement]:
    return [Requirement(line) for line in (part.strip() for part in value.splitlines()) if line]


def _dockerfile_base() -> tuple[str, str, str]:
    """(image, Airflow version, Python version) of the Dockerfile's FROM line."""
    froms = re.findall(r"^FROM\s+(\S+)", _text(ROOT / "Dockerfile"), re.MULTILINE)
    assert len(froms) == 1, froms
    match = re.fullmatch(r"(apache/airflow):(\d+\.\d+\.\d+)-python(\d+\.\d+)", froms[0])
    assert match, f"the base image {froms[0]!r} is not apache/airflow:<version>-python<X.Y>"
    return match.group(1), match.group(2), match.group(3)


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def _substitute(value: str) -> str:
    """The value as a container would see it, each reference replaced by a dummy."""
    return REFERENCE.sub(lambda m: f"x{m.group('name').lower()}x", value)


def _strings(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, str):
        yield node


def _references(compose: dict) -> list[re.Match]:
    """The ${VAR} references in the compose file's values (not in its comments)."""
    return [match for text in _strings(compose) for match in REFERENCE.finditer(text)]


def _monitoring_section() -> str:
    readme = _text(ROOT / "README.md")
    start = readme.index("### Metrics in your monitoring")
    return readme[start:readme.index("\n### ", start + 1)]


def _service_rows(section: str) -> set[str]:
    """The service names in a README table whose rows start with | `name` | and whose header is | service |."""
    table = section[section.index("| service |"):]
    return set(re.findall(r"^\|\s*`([a-z0-9-]+-?[a-z0-9-]*)`\s*\|", table, re.MULTILINE))


def _documented_services() -> set[str]:
    """The service names in the README's production table, and the monitoring profile's in its metrics section."""
    names = _service_rows(_production_section())
    assert names, "the README's production section lists no services"
    return names | _service_rows(_monitoring_section())


def _conditions(service: dict) -> dict[str, str]:
    depends = service.get("depends_on") or {}
    assert isinstance(depends, dict), "depends_on must say which condition it waits for"
    return {name: spec.get("condition", "") for name, spec in depends.items()}


def _runs_airflow(service: dict) -> bool:
    return "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" in _environment(service)


# -- the file and its services --------------------------------------------------------------------------------


def test_the_compose_file_parses_and_has_every_documented_service(services):
    documented = _documented_services()
    assert documented <= set(services), f"documented but not defined: {sorted(documented - set(services))}"
    assert set(services) <= documented, f"defined but not documented: {sorted(set(services) - documented)}"
    assert {"postgres", "redis", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker",
            "airflow-triggerer-1", "airflow-triggerer-2", "airflow-init"} <= set(services)


def test_every_airflow_service_waits_for_init_and_healthy_backends(services):
    for name, service in services.items():
        if not _runs_airflow(service):
            continue
        conditions = _conditions(service)
        assert conditions.get("postgres") == "service_healthy", name
        assert conditions.get("redis") == "service_healthy", name
        if name in ("airflow-init", "airflow-cli"):
            continue
        assert conditions.get("airflow-init") == "service_completed_successfully", name
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert service.get("restart") == "always", name
    assert _conditions(services["airflow-worker"]).get("airflow-apiserver") == "service_healthy"
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"], name


def test_two_triggerers_and_one_scalable_celery_worker(services):
    triggerers = sorted(name for name, service in services.items() if service.get("command") == "triggerer")
    assert triggerers == ["airflow-triggerer-1", "airflow-triggerer-2"]
    worker = services["airflow-worker"]
    assert worker["command"] == "celery worker"
    # `docker compose up --scale airflow-worker=3` needs no fixed name and no host port.
    assert "container_name" not in worker and "ports" not in worker
    for name in triggerers:
        assert "container_name" not in services[name] and "ports" not in services[name]
    assert services["airflow-apiserver"]["ports"] == ["${AIRFLOW_API_PORT:-8080}:8080"]


def test_airflow_is_configured_for_celery_postgres_and_the_carbon_store(services):
    for name, service in services.items():
        if not _runs_airflow(service):
            continue
        env = _environment(service)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:"), name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres/airflow"), name
        assert env["AIRFLOW__CELERY__BROKER_URL"].endswith("@redis:6379/0"), name
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://airflow:"), name
        for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"):
            assert REFERENCE.fullmatch(env[key]), f"{name}: {key} must come from .env"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        for option in ("REGION", "SOURCE", "FALLBACK", "POLICY", "MAX_DELAY"):
            assert REFERENCE.fullmatch(env[f"AIRFLOW__CARBON__{option}"]), f"{name}: [carbon] {option.lower()}"
    # Every Airflow service shares one key set: a Fernet key or JWT secret differing between them breaks Airflow.
    shared = {key: {_environment(s)[key] for s in services.values() if _runs_airflow(s)}
              for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY")}
    assert all(len(values) == 1 for values in shared.values()), shared


def test_the_connections_in_the_environment_are_ones_the_provider_reads(services):
    from airflow.models.connection import Connection

    from airflow_carbon.get_provider_info import get_provider_info
    from airflow_carbon.hooks.metrics import url_from_connection

    env = _environment(services["airflow-worker"])
    connections = {key.removeprefix("AIRFLOW_CONN_").lower(): Connection.from_json(_substitute(value),
                                                                                  conn_id=key.lower())
                   for key, value in env.items() if key.startswith("AIRFLOW_CONN_")}
    assert {"carbon_metrics_default", "watttime_default", "electricitymaps_default"} <= set(connections)
    known = {entry["connection-type"] for entry in get_provider_info()["connection-types"]}
    assert connections["watttime_default"].conn_type == "watttime" in known
    assert connections["electricitymaps_default"].conn_type == "electricitymaps" in known
    metrics = connections["carbon_metrics_default"]
    url = url_from_connection(metrics, metrics.extra_dejson)
    assert url == "postgresql://carbon:xcarbon_db_passwordx@postgres:5432/carbon"
    # The role and database the init script creates are the ones the connection names.
    sql = _text(INIT_SQL)
    assert re.search(rf"CREATE ROLE {metrics.login} LOGIN PASSWORD :'carbon_password'", sql)
    assert re.search(rf"CREATE DATABASE {metrics.schema} OWNER {metrics.login}", sql)
    assert "\\getenv carbon_password CARBON_DB_PASSWORD" in sql
    assert "CARBON_DB_PASSWORD" in _environment(services["postgres"])
    assert "./deploy/postgres-init:/docker-entrypoint-initdb.d:ro" in services["postgres"]["volumes"]


def test_mounts_point_at_real_directories(compose, services):
    mounts = compose["x-airflow-common"]["volumes"]
    specs = [spec.replace("${AIRFLOW_PROJ_DIR:-.}", ".").split(":") for spec in mounts]
    sources = {spec[1]: spec[0] for spec in specs}
    assert sources["/opt/airflow/dags"] == "./dags"
    assert sources["/opt/airflow/data"] == "./airflow_carbon/data", "mount the directory, not the data symlink"
    for target in ("/opt/airflow/dags", "/opt/airflow/data"):
        path = ROOT / sources[target]
        assert path.is_dir() and not path.is_symlink(), path
    assert (ROOT / "airflow_carbon" / "data" / "carbon_intensity.csv").is_file()
    assert (ROOT / "deploy" / "postgres-init").is_dir()
    for name, service in services.items():
        if _runs_airflow(service):
            assert service["volumes"] == mounts, name


def test_the_init_script_is_valid_bash_and_migrates(services):
    init = services["airflow-init"]
    assert init["entrypoint"] == "/bin/bash" and init["command"][0] == "-c"
    script = init["command"][1]
    # What bash receives: compose substitutes ${VAR} and turns $$ into $.
    shell = REFERENCE.sub("value", script).replace("$$", "$")
    check = subprocess.run(["bash", "-n"], input=shell, text=True, capture_output=True, check=False)
    assert check.returncode == 0, check.stderr
    assert "/entrypoint airflow db migrate" in script
    env = _environment(init)
    assert env["_AIRFLOW_WWW_USER_CREATE"] == "true"
    assert REFERENCE.fullmatch(env["_AIRFLOW_WWW_USER_PASSWORD"])


# -- versions ------------------------------------------------------------------------------------------------


def test_the_base_image_is_the_makefiles_airflow_and_meets_setup_cfg():
    image, airflow_version, python_version = _dockerfile_base()
    assert image == "apache/airflow"
    assert airflow_version == _makefile_airflow_version()
    cfg = _setup_cfg()
    airflow_pins = [req for req in _requirements(cfg["options"]["install_requires"]) if req.name == "apache-airflow"]
    assert airflow_pins, "setup.cfg: no apache-airflow in install_requires"
    assert all(req.specifier.contains(Version(airflow_version)) for req in airflow_pins), airflow_pins
    assert SpecifierSet(cfg["options"]["python_requires"]).contains(Version(python_version))
    # The tests below ask this .venv's Airflow about the commands: it must be the image's version.
    assert importlib.metadata.version("apache-airflow") == airflow_version


def test_the_dockerfile_installs_the_package_without_moving_airflow():
    dockerfile = _text(ROOT / "Dockerfile")
    install = re.search(r"^RUN pip install (.+?)(?<!\\)$", dockerfile, re.MULTILINE | re.DOTALL)
    assert install, "no RUN pip install"
    command = install.group(1)
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in command
    assert "--no-cache-dir" in command and '--constraint "${HOME}/constraints.txt"' in command
    # the meters and the examples' inference run in the image's workers
    assert '"/tmp/airflow-carbon[celery,plots,energy,examples]"' in command
    copied = re.findall(r"^COPY\s+(?:--\S+\s+)*(.+?)\s+\S+$", dockerfile, re.MULTILINE)
    sources = {source for line in copied for source in line.split()}
    assert {"setup.cfg", "pyproject.toml", "README.md", "airflow_carbon"} <= sources
    assert all((ROOT / source).exists() for source in sources), sources
    ignored = {line.strip() for line in _text(ROOT / ".dockerignore").splitlines()}
    assert not ignored & sources and {".venv", ".git", ".env"} <= ignored


def test_the_celery_provider_is_a_test_and_celery_extra():
    extras = _setup_cfg()["options.extras_require"]
    for extra in ("test", "celery"):
        assert "apache-airflow-providers-celery" in {req.name for req in _requirements(extras[extra])}, extra


def test_postgres_and_redis_images_are_pinned(services):
    for name in ("postgres", "redis"):
        image = services[name]["image"]
        repository, _, tag = image.partition(":")
        assert repository == name and re.match(r"\d+(\.\d+)*(-[a-z0-9]+)?$", tag), f"{name}: {image} is not pinned"
    assert services["postgres"]["image"] == "postgres:16"  # PostgreSQL's major version fixes the data format


def _airflow_subcommands(services: dict) -> set[str]:
    """Each airflow sub-command the compose file runs: service commands (the image's entrypoint prefixes
    ``airflow``), and ``airflow ...`` in scripts and healthchecks."""
    found: set[str] = set()
    for service in services.values():
        command = service.get("command")
        if isinstance(command, str):
            words = []
            for word in command.split():
                if word.startswith("-"):
                    break
                words.append(word)
            found.add(" ".join(words))
        texts = list(_strings(command)) + list(_strings(service.get("healthcheck", {}).get("test", [])))
        for text in texts:
            for match in re.finditer(r"(?:^|[\s;&|(])airflow[ \t]+([a-z][\w-]*)(?:[ \t]+([a-z][\w-]*))?", text):
                found.add(" ".join(part for part in match.groups() if part))
    return found


def _help(command: str, home: Path) -> tuple[str, int, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW__", "AIRFLOW_"))}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__EXECUTOR="CeleryExecutor")
    result = subprocess.run([str(AIRFLOW), *command.split(), "--help"], env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    return command, result.returncode, result.stderr[-2000:]


def test_every_airflow_command_the_compose_file_runs_exists(services, tmp_path):
    commands = _airflow_subcommands(services)
    expected = {"api-server", "scheduler", "dag-processor", "celery worker", "triggerer", "db migrate", "jobs check"}
    assert expected <= commands, sorted(commands)
    assert AIRFLOW.exists(), AIRFLOW
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda command: _help(command, tmp_path), sorted(commands)))
    failed = [(command, code, err) for command, code, err in results if code != 0]
    assert not failed, failed


# -- secrets ------------------------------------------------------------------------------------------------


def test_no_secret_is_written_in_the_compose_file(compose, services):
    # Any reference to a secret has no default: without .env it is empty (optional ones) or refused (:?).
    for match in _references(compose):
        if SECRET_NAME.search(match.group("name")) and match.group("op") in (":-", "-"):
            assert match.group("arg") == "", f"a default for a secret: {match.group(0)}"
    for name, service in services.items():
        for key, value in _environment(service).items():
            if SECRET_NAME.search(key):
                assert REFERENCE.fullmatch(value), f"{name}: {key} is not a ${{VAR}} reference"
            if key.startswith("AIRFLOW_CONN_"):
                connection = json.loads(value)  # a reference is a plain JSON string
                assert REFERENCE.fullmatch(connection.get("password", "${X}")), f"{name}: {key}'s password"
                assert not any(SECRET_NAME.search(field) for field in connection.get("extra", {})), key
    # Credentials in URLs, and on command lines.
    for text in _strings(services):
        for credential in re.findall(r"://[^/:@\s]*:(\$\{[^}]*\}|[^@\s/]+)@", text):
            assert REFERENCE.fullmatch(credential), f"a literal password in {text!r}"
    redis = services["redis"]["command"]
    assert REFERENCE.fullmatch(redis[redis.index("--requirepass") + 1])


def test_env_is_git_ignored_and_the_example_has_only_placeholders(compose):
    ignored = {line.strip() for line in _text(ROOT / ".gitignore").splitlines()}
    assert ".env" in ignored
    assert not (ROOT / ".env").exists() or ".env" in ignored
    example = {}
    for line in _text(ROOT / ".env.example").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: not NAME=value: {line!r}"
            example[key.strip()] = value.strip()
    read = {match.group("name") for match in _references(compose)}
    assert read == set(example), f"missing: {sorted(read - set(example))}; unused: {sorted(set(example) - read)}"
    for key, value in example.items():
        if SECRET_NAME.search(key):
            assert value == "" or value.startswith("replace-with-"), f".env.example: {key} looks like a real value"
    # What .env must set: every ${VAR:?...} reference.
    required = {m.group("name") for m in _references(compose) if m.group("op") == ":?"}
    assert {"POSTGRES_PASSWORD", "CARBON_DB_PASSWORD", "REDIS_PASSWORD", "FERNET_KEY", "JWT_SECRET",
            "API_SECRET_KEY", "_AIRFLOW_WWW_USER_PASSWORD"} <= required


def test_the_production_doc_covers_start_the_view_connections_and_scaling():
    doc = _production_section()
    for needle in ("docker compose up -d --build", "/carbon/", "--scale airflow-worker=3",
                   "airflow-triggerer-3: *airflow-triggerer", "--conn-type watttime", "--conn-type electricitymaps",
                   "AIRFLOW_CONN_WATTTIME_DEFAULT", "Admin > Connections"):
        assert needle in doc, needle
    assert "airflow-triggerer-3: *airflow-triggerer" in _text(COMPOSE_FILE)


# -- the init SQL on a real PostgreSQL, where one is installed --------------------------------------------------


def _postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


@pytest.mark.timeout(60)
def test_the_init_sql_creates_the_carbon_database_on_postgres():
    """As the postgres image runs it: psql as POSTGRES_USER on POSTGRES_DB, ON_ERROR_STOP, a unix socket only."""
    tmp_path = Path(tempfile.mkdtemp(prefix="carbon-pg-"))  # short: a socket path has at most 107 bytes
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_user = ["runuser", "--preserve-environment", "-u", "nobody", "--"]
        os.chown(tmp_path, pwd.getpwnam("nobody").pw_uid, -1)
    data, socket_dir = tmp_path / "data", str(tmp_path)

    def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(as_user + args, capture_output=True, text=True, timeout=30, check=False, **kwargs)

    def psql(user: str, database: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return run(["psql", "-v", "ON_ERROR_STOP=1", "-h", socket_dir, "-U", user, "--no-password", "--no-psqlrc",
                    "-d", database, *args], **kwargs)

    assert run([_postgres_bin("initdb"), "-D", str(data), "-U", "airflow", "--auth=trust"]).returncode == 0
    start = run([_postgres_bin("pg_ctl"), "-D", str(data), "-o", f"-k {socket_dir} -c listen_addresses=''",
                 "-l", str(tmp_path / "log"), "-w", "start"])
    assert start.returncode == 0, start.stderr
    try:
        assert psql("airflow", "postgres", "-c", "CREATE DATABASE airflow").returncode == 0
        env = {**os.environ, "CARBON_DB_PASSWORD": "not-a-real-secret"}
        sql = _text(INIT_SQL)
        unset = psql("airflow", "airflow", input=sql, env={k: v for k, v in env.items() if k != "CARBON_DB_PASSWORD"})
        assert unset.returncode != 0 and "CARBON_DB_PASSWORD is not set" in unset.stderr
        created = psql("airflow", "airflow", input=sql, env=env)
        assert created.returncode == 0, created.stderr
        owner = psql("airflow", "airflow", "-tAc",
                     "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'carbon'")
        assert owner.stdout.strip() == "carbon"
        has_password = psql("airflow", "airflow", "-tAc",
                            "SELECT rolpassword IS NOT NULL FROM pg_authid WHERE rolname = 'carbon'")
        assert has_password.stdout.strip() == "t"
        assert psql("carbon", "carbon", "-c", "CREATE TABLE t (x int)").returncode == 0
        refused = psql("carbon", "airflow", "-c", "SELECT 1")
        assert refused.returncode != 0 and "CONNECT" in refused.stderr
    finally:
        run([_postgres_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(tmp_path, ignore_errors=True)
