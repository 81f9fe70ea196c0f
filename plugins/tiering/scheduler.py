"""A local Airflow (scheduler, DAG processor, triggerer, API server and UI) on this project: `make airflow`.

    python -m tiering.scheduler [--port 8080] [--airflow-home .airflow] [--warehouse FILE] [--source DIR]

Runs `airflow standalone` with what it needs: AIRFLOW_HOME, the project's dags and plugins folders,
no example DAGs, and the virtualenv's bin/ on PATH (standalone starts its components as `airflow
<component>` by name: without it, FileNotFoundError: 'airflow'). Prints the URL and where the
login is once the API server answers, and stops every component on Ctrl-C (or SIGTERM).

For as long as it runs it holds the warehouse's lock (tiering.locks): its DAG runs write that
warehouse, so a `tiering run` on it is refused with a message naming this scheduler. The
opt-in test tests/integration/test_airflow_scheduler.py starts it the same way (Scheduler).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from tiering.errors import TieringError
from tiering.settings import DEFAULT_WAREHOUSE, PROJECT_ROOT

STOP_TIMEOUT_S = 60
PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"


def scheduler_env(home: Path, port: int, warehouse: Path, source: Path | None = None,
                  extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment `airflow standalone` runs in (inherits this one, less other AIRFLOW_* settings)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    bin_dir = str(Path(sys.executable).parent)
    env.update({
        "PATH": os.pathsep.join([bin_dir, env.get("PATH", "")]),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
        "TIERING_WAREHOUSE": str(warehouse),
        "GX_ANALYTICS_ENABLED": env.get("GX_ANALYTICS_ENABLED", "False"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": env.get("DBT_SEND_ANONYMOUS_USAGE_STATS", "false"),
    })
    if source is not None:
        env["TIERING_SOURCE_DIR"] = str(source)
    env.update(extra or {})
    return env


class Scheduler:
    """`airflow standalone` in a process group of its own, holding the warehouse's lock while it runs."""

    def __init__(self, home: Path, port: int, warehouse: Path = DEFAULT_WAREHOUSE, source: Path | None = None,
                 log: Path | None = None, extra_env: dict[str, str] | None = None):
        self.home, self.port = Path(home).resolve(), port
        self.warehouse = Path(warehouse).resolve()
        self.source = Path(source).resolve() if source else None
        self.log, self.extra_env = log, extra_env
        self.url = f"http://localhost:{port}"
        self.process: subprocess.Popen | None = None
        self._stack = ExitStack()

    @property
    def password_file(self) -> Path:
        return self.home / PASSWORD_FILE

    def start(self, timeout: float = 300) -> Scheduler:
        from tiering.locks import warehouse_lock

        self.home.mkdir(parents=True, exist_ok=True)
        self._stack.enter_context(warehouse_lock(
            self.warehouse, f"the Airflow scheduler of `make airflow` on {self.url} (AIRFLOW_HOME {self.home})",
            kind="scheduler", wait=False))
        # the lock's environment (tiering.locks.HELD_ENV) is set now: the DAG runs' task processes inherit it
        env = scheduler_env(self.home, self.port, self.warehouse, self.source, self.extra_env)
        output = None
        if self.log:
            output = self._stack.enter_context(open(self.log, "w"))  # noqa: SIM115 - self._stack closes it in stop()
        self.process = subprocess.Popen([str(Path(sys.executable).with_name("airflow")), "standalone"], env=env,
                                        stdout=output, stderr=subprocess.STDOUT if output else None,
                                        start_new_session=True, cwd=str(PROJECT_ROOT))
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text()[-2000:] if self.log and self.log.exists() else "(see above)"
                self.stop()
                raise TieringError(f"airflow standalone exited ({self.process.returncode}) while starting: {tail}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as response:
                    health = json.loads(response.read())
                if health.get("scheduler", {}).get("status") == "healthy":
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                pass
            time.sleep(2)
        self.stop()
        raise TieringError(f"Airflow did not answer on {self.url} within {timeout:.0f} s")

    def stop(self) -> None:
        """Ctrl-C to standalone (it stops its components), then SIGTERM/SIGKILL to any left; the lock goes."""
        try:
            if self.process is not None and self.process.poll() is None:
                for sig, wait in ((signal.SIGINT, STOP_TIMEOUT_S), (signal.SIGTERM, 20), (signal.SIGKILL, 10)):
                    try:
                        os.killpg(self.process.pid, sig)
                    except ProcessLookupError:
                        break
                    try:
                        self.process.wait(timeout=wait)
                        break
                    except subprocess.TimeoutExpired:
                        continue
            if self.process is not None:
                with contextlib.suppress(ProcessLookupError):  # components standalone left behind in its group
                    os.killpg(self.process.pid, signal.SIGTERM)
        finally:
            self._stack.close()

    def __enter__(self) -> Scheduler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tiering.scheduler", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--airflow-home", type=Path, default=Path(os.environ.get("AIRFLOW_HOME",
                                                                                 PROJECT_ROOT / ".airflow")))
    parser.add_argument("--warehouse", type=Path, default=DEFAULT_WAREHOUSE)
    parser.add_argument("--source", type=Path, default=os.environ.get("TIERING_SOURCE_DIR"),
                        help="the source the scheduled runs read (default $TIERING_SOURCE_DIR)")
    args = parser.parse_args(argv)
    scheduler = Scheduler(args.airflow_home, args.port, args.warehouse, args.source)
    # Ctrl-C reaches this process only (standalone runs in its own process group): stop it cleanly
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        print(f"starting Airflow (scheduler, DAG processor, triggerer, API server) in {scheduler.home} ...",
              flush=True)
        scheduler.start()
        login = (f"user admin, password in {scheduler.password_file}" if scheduler.password_file.exists()
                 else f"user admin, password in {scheduler.password_file} (written by the API server at first start)")
        print(f"\nAirflow UI: {scheduler.url}  ({login})\n"
              f"DAG customer_tiering_monthly; warehouse {scheduler.warehouse} (held: `tiering run` on it is refused "
              f"while this runs); source {scheduler.source or 'from each run conf (source_dir)'}\n"
              f"Trigger month M with logical date M+1 (its data interval is M). Ctrl-C stops everything.",
              flush=True)
        while scheduler.process.poll() is None:
            time.sleep(1)
        print(f"airflow standalone exited ({scheduler.process.returncode})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping Airflow ...", flush=True)
        return 0
    except TieringError as exc:
        print(f"tiering: error: {exc}", file=sys.stderr)
        return 1
    finally:
        scheduler.stop()
        print("Airflow stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
