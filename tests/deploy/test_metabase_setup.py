"""deploy/metabase/setup_metabase.py against a fake Metabase API (no Docker here): the first run
sets Metabase up with the read-only BI connection, a second run finds it and changes nothing."""
from __future__ import annotations

import importlib.util
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tiering.settings import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "deploy" / "metabase" / "setup_metabase.py"


def _load():
    spec = importlib.util.spec_from_file_location("setup_metabase", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeMetabase:
    def __init__(self):
        self.setup_token = "tok-1"
        self.databases: list[dict] = []
        self.requests: list[tuple[str, str, dict | None]] = []


@pytest.fixture
def metabase():
    state = FakeMetabase()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _reply(self, body):
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            state.requests.append(("GET", self.path, None))
            if self.path == "/api/health":
                return self._reply({"status": "ok"})
            if self.path == "/api/session/properties":
                return self._reply({"setup-token": state.setup_token})
            if self.path == "/api/database":
                assert self.headers["X-Metabase-Session"] == "sess-1"
                return self._reply({"data": state.databases})
            self.send_error(404)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append(("POST", self.path, body))
            if self.path == "/api/setup":
                assert body["token"] == state.setup_token
                state.setup_token = None
                state.databases.append(body["database"])
                return self._reply({"id": "sess-0"})
            if self.path == "/api/session":
                return self._reply({"id": "sess-1"})
            if self.path == "/api/database":
                state.databases.append(body)
                return self._reply({"id": len(state.databases)})
            self.send_error(404)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()


ENV = {"METABASE_ADMIN_EMAIL": "admin@example.com", "METABASE_ADMIN_PASSWORD": "pw-123456",
       "TIERING_BI_READER_PASSWORD": "reader-pw"}


def test_first_start_sets_up_the_read_only_bi_connection_then_nothing_more(metabase):
    module = _load()
    env = {**ENV, "MB_URL": metabase.url}
    assert module.setup(env, delay=0.01) == "setup"
    (database,) = metabase.databases
    assert database["engine"] == "postgres"
    assert database["details"] | {"password": "?"} == {
        "host": "warehouse-postgres", "port": 5432, "dbname": "tiering", "user": "tiering_bi_reader",
        "password": "?", "schema-filters-type": "inclusion", "schema-filters-patterns": "bi", "ssl": False}
    assert database["details"]["password"] == "reader-pw"
    setup_body = next(body for method, path, body in metabase.requests if path == "/api/setup")
    assert setup_body["prefs"]["allow_tracking"] is False
    assert module.setup(env, delay=0.01) == "present"
    assert len(metabase.databases) == 1


def test_an_already_set_up_metabase_gets_the_connection_added(metabase):
    metabase.setup_token = None
    assert _load().setup({**ENV, "MB_URL": metabase.url}, delay=0.01) == "added"
    assert [d["details"]["user"] for d in metabase.databases] == ["tiering_bi_reader"]
