"""The API attacked as a remote client would, on a real loopback server: each attack fails safely.

Remote code execution through a request's Dask scheduler, server folders read through
``path``, the token bypassed or shared between clients, cross-site requests, stalled
readers, unbounded finished scans, and bad input that used to answer 500.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import json
import logging
import signal
import socket
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests
from api_server import APIServer, parse_sse, ws_session
from helpers import wait_until
from tornado.httpclient import HTTPClientError

from technic_panel.data.synthetic import CACHE
from technic_panel.policy import ServerPolicy
from technic_panel.streaming.manager import StreamManager

JSON = {"Content-Type": "application/json"}
SMALL = {"symbols": 60, "seed": 3}
ALICE, BOB = "alice-token", "bob-token"


def bearer(token: str) -> dict[str, str]:
    return {**JSON, "Authorization": f"Bearer {token}"}


def write_csv(path: Path, rows: int = 260) -> None:
    """Write ``rows`` consistent daily bars to ``path``."""
    lines = ["date,open,high,low,close,volume"]
    for day in range(rows):
        price = 50 + (day % 17) * 0.5
        date = datetime.date(2020, 1, 1) + datetime.timedelta(days=day)
        lines.append(f"{date},{price},{price + 1},{price - 1},{price + 0.25},{100_000 + day}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """An allowed data folder with two symbols, a secret folder beside it, and a symlink."""
    root = tmp_path_factory.mktemp("security")
    allowed, secret = root / "allowed", root / "secret"
    allowed.mkdir(), secret.mkdir()
    write_csv(allowed / "ACME.csv"), write_csv(allowed / "BETA.csv")
    (secret / "creds.csv").write_text("user,password,apikey\nroot,s3cr3t-value,k\n")
    write_csv(secret / "HIDDEN.csv")
    (allowed / "escape").symlink_to(secret, target_is_directory=True)
    return allowed, secret


@pytest.fixture(scope="module")
def guarded(folders):
    """A server with two clients' tokens and one allowed folder."""
    policy = ServerPolicy(data_dirs=(folders[0],), token=f"{ALICE},{BOB}")
    with APIServer(StreamManager(max_concurrent=16), policy=policy) as server:
        yield server


@pytest.fixture(scope="module")
def open_server():
    """A server without a token and with the default policy."""
    with APIServer(StreamManager(max_concurrent=16), policy=ServerPolicy()) as server:
        yield server


def start(server, body, token=ALICE) -> requests.Response:
    return requests.post(f"{server.url}/scan/stream", json=body, headers=bearer(token),
                         timeout=10)


def final_of(server, scan_id: str, token=ALICE) -> dict:
    text = requests.get(f"{server.url}/events/results?scan_id={scan_id}",
                        headers=bearer(token), timeout=60).text
    return json.loads(parse_sse(text)[-1]["data"])["data"]


def error_of(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


# --- remote code execution: a request never names a Dask scheduler --------------------------

def test_a_requested_scheduler_is_refused_and_never_contacted(guarded):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(1.0)
    address = "tcp://127.0.0.1:%d" % listener.getsockname()[1]
    with listener:
        for body in ({"executor": "dask", "scheduler": address}, {"scheduler": address}):
            error = error_of(start(guarded, body), 400)
            assert error["field"] == "scheduler"
            assert "TECHNIC_DASK_SCHEDULER" in error["message"]
        with pytest.raises(TimeoutError):
            listener.accept()


@pytest.mark.parametrize(("body", "field"), [
    ({"executor": "process", "workers": 256}, "workers"),
    ({"executor": "thread", "workers": 200}, "workers"),
    ({"symbols": 100_000}, None),
])
def test_pool_sizes_and_universes_stay_within_the_policy(folders, body, field):
    policy = ServerPolicy(max_processes=2, max_workers=8, max_symbols=50_000)
    with APIServer(StreamManager(), policy=policy) as server:
        response = requests.post(f"{server.url}/scan/stream", json=body, headers=JSON,
                                 timeout=10)
        error = error_of(response, 400)
        assert error["field"] == (field or "symbols")
        assert "on this server" in error["message"]


def test_executors_the_operator_did_not_allow_are_refused():
    with APIServer(StreamManager(), policy=ServerPolicy(executors=("thread",))) as server:
        response = requests.post(f"{server.url}/scan/stream", json={"executor": "dask"},
                                 headers=JSON, timeout=10)
        assert error_of(response, 400)["field"] == "executor"


# --- server files: paths only inside the operator's folders, and nothing revealed ----------

def test_paths_outside_the_allowed_folders_all_get_one_answer(guarded, folders):
    allowed, secret = folders
    outside = [str(secret), str(secret / "creds.csv"), "/etc", "/no/such/folder",
               str(allowed / ".." / "secret"), str(allowed / "escape"),
               str(allowed / "escape" / "HIDDEN.csv")]
    messages = set()
    for path in outside:
        error = error_of(start(guarded, {"source": "files", "path": path}), 400)
        assert error["field"] == "path"
        messages.add(error["message"])
    assert len(messages) == 1, messages  # existing and missing paths are indistinguishable
    assert "TECHNIC_DATA_DIRS" in messages.pop()


def test_files_are_refused_until_the_operator_allows_a_folder(open_server, folders):
    response = requests.post(f"{open_server.url}/scan/stream", headers=JSON, timeout=10,
                             json={"source": "files", "path": str(folders[0])})
    assert "allows none" in error_of(response, 400)["message"]


def test_an_allowed_folder_scans_and_errors_quote_no_file_contents(guarded, folders):
    allowed, _ = folders
    (allowed / "LEAK.csv").write_text("user,password,apikey\nroot,s3cr3t-value,k\n")
    try:
        response = start(guarded, {"source": "files", "path": str(allowed)})
        assert response.status_code == 201, response.text
        scan_id = response.json()["scan_id"]
        text = requests.get(f"{guarded.url}/events/results?scan_id={scan_id}",
                            headers=bearer(ALICE), timeout=60).text
    finally:
        (allowed / "LEAK.csv").unlink()
    events = [json.loads(event["data"]) for event in parse_sse(text) if "data" in event]
    results = {m["data"]["symbol"] for m in events if m["type"] == "result"}
    errors = [m["data"] for m in events if m["type"] == "error"]
    assert {"ACME", "BETA"} <= results
    assert [e["symbol"] for e in errors] == ["LEAK"]
    for secret_word in ("password", "apikey", "s3cr3t"):
        assert secret_word not in text


# --- the token: required, never logged, and each client's scans are its own ----------------

def test_each_token_sees_and_stops_only_its_own_scans(guarded):
    alice = start(guarded, SMALL).json()["scan_id"]
    bob = start(guarded, SMALL, BOB).json()["scan_id"]
    url = guarded.url

    def ids(token):
        return {s["scan_id"] for s in requests.get(f"{url}/scans", headers=bearer(token),
                                                   timeout=10).json()["scans"]}

    assert alice in ids(ALICE) and bob not in ids(ALICE)
    assert bob in ids(BOB) and alice not in ids(BOB)
    for method, path in (("GET", f"/scan/stream/{alice}"), ("POST", f"/scan/stop/{alice}"),
                         ("GET", f"/events/results?scan_id={alice}")):
        response = requests.request(method, url + path, headers=bearer(BOB), timeout=10)
        assert error_of(response, 404)["field"] == "scan_id"
    frames, _ = asyncio.run(ws_session(f"ws://127.0.0.1:{guarded.port}/ws/results",
                                       send=({"action": "stop", "scan_id": alice},),
                                       headers={"Authorization": f"Bearer {BOB}"},
                                       until=lambda frames: frames))
    assert frames[0]["error"]["code"] == 404
    assert final_of(guarded, alice)["reason"] is None  # Bob's stop did not reach it
    assert requests.get(f"{url}/scans", timeout=10).status_code == 401


def test_tokens_in_urls_never_reach_the_access_log(guarded, caplog):
    scan_id = start(guarded, SMALL).json()["scan_id"]
    with caplog.at_level(logging.INFO, logger="tornado.access"):
        requests.get(f"{guarded.url}/events/results?scan_id={scan_id}&token={ALICE}",
                     timeout=60)
        requests.get(f"{guarded.url}/scans?token={BOB}&x=1", timeout=10)
        wait_until(lambda: len([r for r in caplog.records if r.name == "tornado.access"]) >= 2)
    lines = [r.getMessage() for r in caplog.records if r.name == "tornado.access"]
    assert any("token=[redacted]" in line for line in lines), lines
    assert not any(ALICE in line or BOB in line for line in lines), lines


# --- cross-site requests ---------------------------------------------------------------------

@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_posts_that_browsers_send_cross_site_unasked_are_415(open_server, content_type):
    headers = {"Origin": "http://evil.example"}
    if content_type:
        headers["Content-Type"] = content_type
    before = len(open_server.manager.list())
    response = requests.post(f"{open_server.url}/scan/stream", data="{}" if content_type else None,
                             headers=headers, timeout=10)
    error = error_of(response, 415)
    assert error["field"] == "Content-Type" and "application/json" in error["message"]
    assert len(open_server.manager.list()) == before


def test_a_dns_rebinding_page_cannot_open_the_websocket(open_server):
    port = open_server.port
    rebound = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    with pytest.raises(HTTPClientError) as info:
        asyncio.run(ws_session(f"ws://127.0.0.1:{port}/ws/results", headers=rebound))
    assert info.value.code == 403
    own = {"Origin": f"http://localhost:{port}"}
    frames, _ = asyncio.run(ws_session(f"ws://127.0.0.1:{port}/ws/results", headers=own,
                                       send=({"action": "stop"},), until=lambda f: f))
    assert frames[0]["error"]["code"] == 400  # connected: the stop lacked a scan id


def test_origins_the_operator_allows_may_open_the_websocket():
    policy = ServerPolicy(allowed_origins=("dash.example:443",))
    with APIServer(StreamManager(), policy=policy) as server:
        url = f"ws://127.0.0.1:{server.port}/ws/results"
        frames, _ = asyncio.run(ws_session(url, headers={"Origin": "https://dash.example:443"},
                                           send=({"action": "stop"},), until=lambda f: f))
        assert frames[0]["error"]["code"] == 400
        with pytest.raises(HTTPClientError):
            asyncio.run(ws_session(url, headers={"Origin": f"http://localhost:{server.port}"}))


# --- bounded memory: finished scans count, stalled readers are let go ------------------------

def test_finished_scans_make_room_for_new_ones_oldest_first():
    with APIServer(StreamManager(max_concurrent=2), policy=ServerPolicy()) as server:
        started = []
        for _ in range(5):
            response = requests.post(f"{server.url}/scan/stream", json=SMALL, headers=JSON,
                                     timeout=10)
            assert response.status_code == 201, response.text
            started.append(response.json()["scan_id"])
            final_of(server, started[-1])
        held = [scan["scan_id"] for scan in server.manager.list()]
        assert held == started[:-3:-1]  # the two newest, newest first


def test_the_message_budget_drops_the_oldest_finished_scans():
    manager = StreamManager(max_concurrent=10, max_held_messages=150)
    with APIServer(manager, policy=ServerPolicy()) as server:
        ids = []
        for _ in range(3):
            ids.append(requests.post(f"{server.url}/scan/stream", json=SMALL, headers=JSON,
                                     timeout=10).json()["scan_id"])
            final_of(server, ids[-1])
        held = [scan["scan_id"] for scan in manager.list()]
        assert ids[0] not in held and held[0] == ids[-1]
        assert sum(manager.get(i).held_messages for i in held) <= 150


def test_a_stalled_sse_reader_is_disconnected_and_pins_nothing():
    manager = StreamManager(max_concurrent=4, inactivity_timeout=0.5)
    with APIServer(manager, policy=ServerPolicy(), write_timeout=1.0) as server:
        scan_id = requests.post(f"{server.url}/scan/stream", json={"symbols": 4000},
                                headers=JSON, timeout=10).json()["scan_id"]
        reader = socket.socket()
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.connect(("127.0.0.1", server.port))
        reader.sendall(f"GET /events/results?scan_id={scan_id} HTTP/1.1\r\n"
                       f"Host: 127.0.0.1\r\n\r\n".encode())
        with reader:
            wait_until(lambda: not manager.get(scan_id).running, timeout=60)
            wait_until(lambda: manager.list() == [], timeout=30)  # unpinned, then cleaned up


# --- bad input is a 4xx with the envelope, never a 500 ---------------------------------------

def test_non_finite_numbers_are_400_and_the_listing_stays_healthy(open_server):
    body = '{"min_price": 1e400}'
    response = requests.post(f"{open_server.url}/scan/stream", data=body, headers=JSON,
                             timeout=10)
    error = error_of(response, 400)
    assert error["field"] == "min_price" and "finite" in error["message"]
    assert requests.get(f"{open_server.url}/scans", timeout=10).status_code == 200


def test_a_deeply_nested_filter_is_400_naming_filter(open_server):
    body = {"filter": "not " * 5000 + "rsi_14 < 30"}
    response = requests.post(f"{open_server.url}/scan/stream", json=body, headers=JSON,
                             timeout=10)
    assert error_of(response, 400)["field"] == "filter"


@pytest.mark.parametrize("text", ["%D9%A3", "%EF%BC%93", "%E0%A5%A9"])
def test_non_ascii_digits_are_not_numbers(open_server, text):
    scan_id = requests.post(f"{open_server.url}/scan/stream", json=SMALL, headers=JSON,
                            timeout=10).json()["scan_id"]
    for query in (f"since={text}", f"limit={text}"):
        response = requests.get(f"{open_server.url}/scan/stream/{scan_id}?{query}", timeout=10)
        assert error_of(response, 400)["field"] == query.split("=")[0]
    response = requests.get(f"{open_server.url}/events/results?scan_id={scan_id}", timeout=10,
                            headers={"Last-Event-ID": "\u0663".encode()})
    assert error_of(response, 400)["field"] == "Last-Event-ID"


@pytest.mark.parametrize(("path", "allowed"), [
    ("/scan/stream", "POST, OPTIONS"), ("/health", "GET, HEAD, OPTIONS"),
    ("/scans", "GET, HEAD, OPTIONS"), ("/events/results", "GET, OPTIONS"),
])
def test_options_is_204_with_allow(open_server, path, allowed):
    response = requests.options(open_server.url + path, timeout=10)
    assert response.status_code == 204 and response.content == b""
    assert response.headers["Allow"] == allowed


def test_head_answers_the_headers_of_get(open_server):
    response = requests.head(f"{open_server.url}/health", timeout=10)
    assert response.status_code == 200 and response.content == b""
    assert int(response.headers["Content-Length"]) == len(
        requests.get(f"{open_server.url}/health", timeout=10).content)
    assert requests.head(f"{open_server.url}/scan/stream/scan_nope",
                         timeout=10).status_code == 404
    assert requests.head(f"{open_server.url}/events/results", timeout=10).status_code == 405


def test_no_request_thread_is_left_behind_by_refused_scans(open_server):
    before = {t.name for t in threading.enumerate()}
    for body in ({"scheduler": "tcp://127.0.0.1:1"}, {"source": "files", "path": "/etc"}):
        requests.post(f"{open_server.url}/scan/stream", json=body, headers=JSON, timeout=10)
    assert not {t.name for t in threading.enumerate()} - before


# --- the served app: the operator's scheduler, a silent one, and SIGTERM --------------------

@pytest.mark.dask
def test_the_served_app_fails_a_silent_scheduler_scan_then_ends_on_sigterm():
    from browser_helpers import served_app

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    address = "tcp://127.0.0.1:%d" % silent.getsockname()[1]
    with silent, served_app(TECHNIC_DASK_SCHEDULER=address) as served:
        start = requests.post(f"{served.base}/scan/stream", json={"executor": "dask"},
                              headers=JSON, timeout=10)
        assert start.status_code == 201, start.text
        scan_id = start.json()["scan_id"]
        began = time.monotonic()
        text = requests.get(f"{served.base}/events/results?scan_id={scan_id}", timeout=60).text
        final = json.loads(parse_sse(text)[-1]["data"])["data"]
        assert final["status"] == "failed" and address in final["error"]
        assert time.monotonic() - began < 30
        assert requests.get(f"{served.base}/health", timeout=10).status_code == 200
        served.process.send_signal(signal.SIGTERM)
        served.process.wait(timeout=10)


def test_memory_stays_flat_over_twenty_large_scans(monkeypatch):
    """The resource test at test scale (BENCHMARKS.md "Server memory" runs 100,000 symbols).

    Each seed is another synthetic universe (about 50 MB of bars at 5,000 symbols); the
    process-wide chunk cache holds up to its budget (1 GiB, twenty such universes), so
    a 128 MiB budget here makes it fill within the first scans, bounded like the rest.
    """
    monkeypatch.setattr(CACHE, "budget", 128 * 2**20)
    CACHE.clear()
    manager = StreamManager(max_concurrent=4, max_held_messages=10_000)
    process = psutil.Process()
    rss = []
    try:
        for seed in range(20):
            record = manager.get(manager.start_stream({"symbols": 5000, "seed": seed}))
            wait_until(lambda r=record: not r.running, timeout=120, interval=0.05)
            gc.collect()
            rss.append(process.memory_info().rss / 2**20)
        assert sum(manager.get(s["scan_id"]).held_messages for s in manager.list()) <= 10_000
    finally:
        manager.shutdown()
        CACHE.clear()
    assert max(rss[5:]) - rss[4] < 200, [round(mb) for mb in rss]  # flat once the budgets fill


@pytest.mark.parametrize(("settings", "field"), [
    ({"executor": "dask", "scheduler": "tcp://127.0.0.1:1"}, "scheduler"),
    ({"source": "files", "path": "/etc"}, "path"),
    ({"executor": "process", "workers": 256}, "workers"),
])
def test_the_served_dashboard_applies_the_same_policy(settings, field):
    """``/app?executor=dask&scheduler=...`` then Start: the controller app.py builds refuses it."""
    from technic_panel.config import ConfigError
    from technic_panel.ui.controller import ScanController

    manager = StreamManager()
    try:
        controller = ScanController(manager, policy=ServerPolicy(max_processes=2), **settings)
        with pytest.raises(ConfigError) as info:
            controller.start()
        assert info.value.field == field
        assert manager.list() == []
    finally:
        manager.shutdown()


@pytest.mark.parametrize(("settings", "expected"), [
    ({"latency_ms": 1}, 4),  # io-bound: the thread default would be 32
    ({"executor": "process"}, 2), ({"executor": "dask"}, 2), ({"workers": 3}, 3),
])
def test_a_scan_that_names_no_workers_still_runs_within_the_policy(settings, expected):
    from technic_panel.config import ScanConfig
    from technic_panel.streaming.run import capped_workers

    policy = ServerPolicy(max_workers=4, max_processes=2)
    config = ScanConfig.from_mapping(settings, policy)
    io_bound = config.latency_ms > 0
    assert capped_workers(config, policy, io_bound) == expected
    assert capped_workers(config, None, io_bound) == config.workers  # the notebook decides
