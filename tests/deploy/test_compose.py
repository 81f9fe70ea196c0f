"""Offline checks of the team stack (docker-compose.yml, .env.example, deploy/).

No Docker engine is needed: the compose file is validated against the Compose
Specification schema vendored in check-jsonschema, then parsed with PyYAML (which
resolves the `<<: *anchor` merge keys the way Compose does) for the project's own rules.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"

METADATA_DB = "postgres"
WAREHOUSE_DB = "warehouse-postgres"
AIRFLOW_COMMANDS = {  # service -> Airflow sub-command it must run
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}
REQUIRED_SERVICES = {METADATA_DB, WAREHOUSE_DB, "metabase", "airflow-init", *AIRFLOW_COMMANDS}

# ${VAR}, ${VAR-default}, ${VAR:-default}, ${VAR?err}, ${VAR:?err}, ${VAR+alt}, ${VAR:+alt},
# and the unbraced $VAR. `$$` is Compose's escape for a literal `$` and is removed first.
_BRACED = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?[^}]*\}")
_BARE = re.compile(r"\$(?P<name>[A-Za-z_][A-Za-z0-9_]*)")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    with COMPOSE_FILE.open() as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _env(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, in either of its two Compose forms, as a dict."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def _bind_sources(service: dict[str, Any]) -> Iterator[str]:
    """Host paths of a service's bind mounts (short `src:dst[:mode]` or long syntax)."""
    for vol in service.get("volumes") or []:
        if isinstance(vol, str):
            source = vol.split(":", 1)[0] if ":" in vol else None  # "dst" alone: anonymous
            if source and (source.startswith((".", "/", "~")) or "$" in source):
                yield source
        elif vol.get("type") == "bind":
            yield vol["source"]


def _named_volumes(service: dict[str, Any]) -> Iterator[str]:
    for vol in service.get("volumes") or []:
        if isinstance(vol, str):
            source = vol.split(":", 1)[0] if ":" in vol else None
            if source and not source.startswith((".", "/", "~", "$")):
                yield source
        elif vol.get("type") == "volume" and vol.get("source"):
            yield vol["source"]


def _strings(node: Any) -> Iterator[str]:
    """Every string (keys and values) in the parsed YAML: what Compose interpolates."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _referenced_vars(compose: dict[str, Any]) -> dict[str, bool]:
    """{VAR: has_default} for every variable Compose would interpolate.

    Taken from the parsed YAML rather than the raw text so that comments are ignored.
    A variable "has a default" when its use cannot fail or be blank by mistake:
    `-`/`:-` (default) or `+`/`:+` (alternate). Plain `${VAR}`, `$VAR`, `?`/`:?` have none.
    """
    found: dict[str, bool] = {}
    for text in _strings(compose):
        text = text.replace("$$", "")
        for match in _BRACED.finditer(text):
            op = match.group("op") or ""
            has_default = op.endswith(("-", "+"))
            name = match.group("name")
            found[name] = found.get(name, True) and has_default
        for match in _BARE.finditer(_BRACED.sub("", text)):
            found[match.group("name")] = False
    return found


def _env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        assert sep, f".env.example: not KEY=value: {line!r}"
        values[key.strip()] = value.strip()
    return values


# --- (a) schema -----------------------------------------------------------------------


def test_compose_file_is_valid_against_compose_spec_schema() -> None:
    # check-jsonschema ships the Compose Specification schema ("vendor.compose-spec"),
    # so this runs offline.
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         "docker-compose.yml"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_obsolete_top_level_version(compose: dict[str, Any]) -> None:
    assert "version" not in compose, "the Compose Specification ignores `version:`; drop it"


# --- (b) structure ----------------------------------------------------------------------


def test_required_services_exist(services: dict[str, Any]) -> None:
    missing = REQUIRED_SERVICES - services.keys()
    assert not missing, f"missing services: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(AIRFLOW_COMMANDS))
def test_airflow_service_runs_its_component(services: dict[str, Any], name: str) -> None:
    assert AIRFLOW_COMMANDS[name] in _command(services[name])


def test_databases(services: dict[str, Any]) -> None:
    metadata, warehouse = services[METADATA_DB], services[WAREHOUSE_DB]
    assert metadata["image"].startswith("postgres:16")
    assert _env(metadata)["POSTGRES_DB"] == "airflow"
    assert "pg_isready" in " ".join(metadata["healthcheck"]["test"])
    assert warehouse["image"].startswith("postgres:16")
    assert _env(warehouse)["POSTGRES_DB"] == "tiering"
    assert any(v.endswith(":/docker-entrypoint-initdb.d:ro") and v.startswith("./deploy/postgres/init")
               for v in warehouse["volumes"] if isinstance(v, str))
    for script in ("01_roles.sql", "02_passwords.sh"):
        assert (ROOT / "deploy/postgres/init" / script).is_file()


def test_airflow_services_share_config_and_metadata_db(services: dict[str, Any]) -> None:
    airflow = {name: svc for name, svc in services.items() if name.startswith("airflow-")}
    assert set(AIRFLOW_COMMANDS) | {"airflow-init"} <= set(airflow)
    for name, svc in airflow.items():
        env = _env(svc)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor", name
        conn = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        # postgresql+psycopg2://user:password@<host>[:port]/<db>, host = the metadata service
        match = re.fullmatch(r"postgresql\+psycopg2://[^@/]+@([^/:]+)(?::\d+)?/(\w+)", conn)
        assert match and match.groups() == (METADATA_DB, "airflow"), f"{name}: {conn}"
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == "false", name
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/tiering/dags", name
        assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == "/opt/tiering/plugins", name
        assert "@warehouse-postgres" in env["TIERING_PG_DSN"], name
        # Airflow 3: without a shared JWT secret and the api-server's URL, tasks cannot run.
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"], name
        assert "airflow-apiserver:8080" in env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"], name
        assert svc["depends_on"][METADATA_DB]["condition"] == "service_healthy", name
        if name != "airflow-init":
            assert svc["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully", name


def test_apiserver_port_and_healthcheck(services: dict[str, Any]) -> None:
    api = services["airflow-apiserver"]
    assert any(str(p).endswith(":8080") for p in api["ports"])
    assert "/api/v2/monitor/health" in " ".join(api["healthcheck"]["test"])


def test_images_are_pinned_to_a_release(services: dict[str, Any]) -> None:
    """Every pulled image names a release tag (a ${VAR:-default} image: its default), never :latest."""
    for name, service in services.items():
        if "image" not in service or "build" in service:
            continue
        image = service["image"]
        match = re.fullmatch(r"\$\{[A-Za-z_]+:-([^}]+)\}", image)
        image = match.group(1) if match else image
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", (name, service["image"])
    assert re.fullmatch(r"metabase/metabase:v0\.\d+\.\d+(\.\d+)?",
                        re.sub(r"^\$\{METABASE_IMAGE:-(.*)\}$", r"\1", services["metabase"]["image"]))
    env_example = {line.split("=", 1)[0]: line.split("=", 1)[1] for line in ENV_EXAMPLE.read_text().splitlines()
                   if "=" in line and not line.startswith("#")}
    assert env_example["METABASE_IMAGE"] in services["metabase"]["image"]


def test_bind_mounted_host_paths_exist_in_repo(services: dict[str, Any]) -> None:
    checked = 0
    for name, svc in services.items():
        for source in _bind_sources(svc):
            # Absolute, home-relative or variable paths are not reproducible from a clone.
            assert source.startswith("./"), f"{name}: bind source {source!r} must be ./relative"
            path = (ROOT / source).resolve()
            assert path.is_relative_to(ROOT), f"{name}: {source!r} points outside the repo"
            assert path.exists(), f"{name}: bind source {source!r} does not exist in the repo"
            checked += 1
    assert checked, "expected bind mounts (dags, plugins, ...)"


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, svc in services.items():
        undeclared = set(_named_volumes(svc)) - declared
        assert not undeclared, f"{name}: undeclared named volumes {sorted(undeclared)}"


def test_build_files_exist(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        build = svc.get("build")
        if build is None:
            continue
        context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
        assert context.is_dir(), name
        if isinstance(build, dict) and "dockerfile" in build:
            assert (context / build["dockerfile"]).is_file(), name


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not available")
@pytest.mark.parametrize("script", sorted(p.relative_to(ROOT).as_posix()
                                          for p in (ROOT / "deploy").rglob("*.sh")))
def test_deploy_shell_scripts_parse(script: str) -> None:
    result = subprocess.run(["bash", "-n", script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- (c) variables ----------------------------------------------------------------------


def test_env_example_has_every_variable_without_default(compose: dict[str, Any]) -> None:
    required = {name for name, has_default in _referenced_vars(compose).items() if not has_default}
    missing = required - _env_example().keys()
    assert not missing, f".env.example lacks variables that have no default: {sorted(missing)}"


def test_env_example_documents_every_variable(compose: dict[str, Any]) -> None:
    missing = _referenced_vars(compose).keys() - _env_example().keys()
    assert not missing, f".env.example lacks: {sorted(missing)}"


def test_env_example_holds_no_real_secrets() -> None:
    for key, value in _env_example().items():
        if re.search(r"PASSWORD|SECRET|_KEY$", key):
            assert value == "" or "change-me" in value, f"{key}: use a change-me placeholder"
