"""Tests of the HTTP API against a real server on loopback: endpoints, errors, auth, streams."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import requests
from api_server import APIServer, parse_sse, ws_session
from helpers import free_port, wait_until
from tornado.httpclient import HTTPClientError

from technic_panel.api.openapi import openapi_spec
from technic_panel.api.rest import API_TOKEN_ENV, ROUTES, make_app
from technic_panel.client.scan_client import ScanClient
from technic_panel.config import ScanConfig
from technic_panel.streaming.manager import StreamManager, default_manager

JSON = {"Content-Type": "application/json"}
SMALL = {"symbols": 150, "seed": 7}
SLOW = {"symbols": 3000, "latency_ms": 100, "workers": 1}
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server():
    with APIServer(StreamManager(max_concurrent=8)) as running:
        yield running


def start(server, config=SMALL) -> str:
    response = requests.post(f"{server.url}/scan/stream", json=config, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["scan_id"]


def finished(server, config=SMALL) -> str:
    scan_id = start(server, config)
    wait_until(lambda: not server.manager.get(scan_id).running, timeout=30)
    return scan_id


def all_messages(server, scan_id: str) -> list[dict]:
    """Every message of a finished scan, page by page through GET /scan/stream/{id}."""
    messages, since = [], 0
    while True:
        page = requests.get(f"{server.url}/scan/stream/{scan_id}",
                            params={"since": since, "limit": 40}, timeout=10).json()
        messages += page["messages"]
        since = page["next_since"]
        if not page["has_more"]:
            return messages


def assert_envelope(response, code: int, field: str | None = None) -> dict:
    assert response.status_code == code, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(response.json()) == {"error"}
    assert error["code"] == code and error["message"]
    assert error["field"] == field
    return error


def test_health_counts_scans(server):
    scan_id = start(server, SLOW)
    body = requests.get(f"{server.url}/health", timeout=10).json()
    requests.post(f"{server.url}/scan/stop/{scan_id}", timeout=10)
    assert body["status"] == "ok" and body["scans"] >= 1 and body["running"] >= 1


def test_post_answers_201_with_working_links(server):
    response = requests.post(f"{server.url}/scan/stream", json=SMALL, timeout=10)
    assert response.status_code == 201
    body = response.json()
    assert body["scan_id"].startswith("scan_")
    links = body["links"]
    assert response.headers["Location"] == links["self"]
    assert links["websocket"].startswith("ws://127.0.0.1:")
    assert requests.get(links["self"], timeout=10).json()["scan_id"] == body["scan_id"]
    events = parse_sse(requests.get(links["events"], timeout=30).text)
    assert events[-1]["event"] == "final"
    frames, code = asyncio.run(ws_session(links["websocket"]))
    assert frames[-1]["type"] == "final" and code == 1000
    assert requests.post(links["stop"], timeout=10).status_code == 200


def test_an_empty_body_starts_a_default_scan(server):
    response = requests.post(f"{server.url}/scan/stream", timeout=10, headers=JSON)
    assert response.status_code == 201
    scan_id = response.json()["scan_id"]
    assert requests.post(f"{server.url}/scan/stop/{scan_id}", timeout=10).status_code == 200
    assert server.manager.get(scan_id).config.symbols == ScanConfig.param["symbols"].default


def test_status_pages_through_every_message_once(server):
    scan_id = finished(server)
    status = requests.get(f"{server.url}/scan/stream/{scan_id}", timeout=10).json()
    assert status["status"] == "completed" and status["progress"]["processed"] == 150
    assert len(status["messages"]) == status["last_seq"] and not status["has_more"]
    pages = all_messages(server, scan_id)
    assert pages == status["messages"]
    assert [m["metadata"]["seq"] for m in pages] == list(range(1, status["last_seq"] + 1))
    tail = requests.get(f"{server.url}/scan/stream/{scan_id}",
                        params={"since": status["last_seq"]}, timeout=10).json()
    assert tail["messages"] == [] and tail["next_since"] == status["last_seq"]


@pytest.mark.parametrize(("name", "value"), [
    ("since", "-1"), ("since", "abc"), ("since", "99999"), ("since", "1.5"),
    ("limit", "0"), ("limit", "10001"), ("limit", "x"),
])
def test_bad_since_or_limit_is_400_naming_it(server, name, value):
    scan_id = finished(server)
    response = requests.get(f"{server.url}/scan/stream/{scan_id}", params={name: value},
                            timeout=10)
    message = assert_envelope(response, 400, name)["message"]
    assert message.startswith(f"{name} ") and value in message


def test_since_beyond_the_last_seq_is_400_naming_since_its_value_and_the_bound(server):
    scan_id = finished(server)
    url = f"{server.url}/scan/stream/{scan_id}"
    last = requests.get(url, timeout=10).json()["last_seq"]
    error = assert_envelope(requests.get(url, params={"since": last + 1}, timeout=10), 400,
                            "since")
    assert error["message"].startswith("since ")
    assert str(last + 1) in error["message"] and str(last) in error["message"]


def test_since_n_returns_exactly_the_messages_after_n(server):
    scan_id = finished(server)
    url = f"{server.url}/scan/stream/{scan_id}"
    every = requests.get(url, params={"limit": 10_000}, timeout=10).json()["messages"]
    last = len(every)
    assert [m["metadata"]["seq"] for m in every] == list(range(1, last + 1))
    for since in (0, 1, last // 2, last - 1, last):
        page = requests.get(url, params={"since": since, "limit": 10_000}, timeout=10).json()
        assert page["messages"] == every[since:], f"since={since}"
        assert (page["next_since"], page["has_more"]) == (last, False)


def test_stop_is_idempotent_and_404_for_unknown(server):
    scan_id = start(server, SLOW)
    first = requests.post(f"{server.url}/scan/stop/{scan_id}", timeout=10)
    second = requests.post(f"{server.url}/scan/stop/{scan_id}", timeout=10)
    assert first.status_code == second.status_code == 200
    assert second.json()["scan_id"] == scan_id
    wait_until(lambda: server.manager.get(scan_id).status == "stopped", timeout=10)
    assert requests.post(f"{server.url}/scan/stop/{scan_id}", timeout=10).status_code == 200
    assert_envelope(requests.post(f"{server.url}/scan/stop/scan_nope", timeout=10), 404,
                    "scan_id")


def test_scans_lists_running_and_recent(server):
    done, running = finished(server), start(server, SLOW)
    listed = {scan["scan_id"]: scan for scan in
              requests.get(f"{server.url}/scans", timeout=10).json()["scans"]}
    requests.post(f"{server.url}/scan/stop/{running}", timeout=10)
    assert listed[done]["status"] == "completed" and listed[running]["status"] == "running"


@pytest.mark.parametrize(("body", "field"), [
    ('{"symbols": 10', None), ("[1, 2]", None), ('"text"', None), ('{"symbols": NaN}', None),
    ("\xff\xfe", None), ('{"bogus": 1}', "bogus"), ('{"symbols": -1}', "symbols"),
    ('{"executor": "gpu"}', "executor"), ('{"max_fraction": 1.5}', "max_fraction"),
    ('{"filter": "rsi_14 <"}', "filter"), ('{"symbols": true}', "symbols"),
    ('{"source": "files"}', "path"), ('{"scheduler": "tcp://x:1"}', "scheduler"),
])
def test_invalid_bodies_are_400_naming_the_field(server, body, field):
    response = requests.post(f"{server.url}/scan/stream", data=body.encode("latin-1"),
                             headers=JSON, timeout=10)
    error = assert_envelope(response, 400, field)
    if field is not None:
        assert field in error["message"]


def test_body_over_64_kib_is_413(server):
    body = json.dumps({"filter": "x" * (64 * 1024)})
    response = requests.post(f"{server.url}/scan/stream", data=body, headers=JSON, timeout=10)
    assert_envelope(response, 413)


@pytest.mark.parametrize("path", ["/scan/stream/scan_nope", "/events/results?scan_id=scan_nope"])
def test_unknown_scan_is_404(server, path):
    assert_envelope(requests.get(server.url + path, timeout=10), 404, "scan_id")


def test_unknown_scan_over_websocket_is_404():
    with APIServer() as api:
        with pytest.raises(HTTPClientError) as raised:
            asyncio.run(ws_session(f"ws://127.0.0.1:{api.port}/ws/results?scan_id=scan_nope"))
    assert raised.value.code == 404
    assert json.loads(raised.value.response.body)["error"]["field"] == "scan_id"


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/scan/nope"), ("POST", "/scan/stream/a/b"), ("GET", "/scans/x"),
    ("GET", "/events/other"), ("GET", "/ws/other"), ("DELETE", "/nothing/here"),
])
def test_unknown_paths_are_404(server, method, path):
    assert_envelope(requests.request(method, server.url + path, timeout=10), 404)


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("POST", "/scans", "GET, HEAD, OPTIONS"), ("GET", "/scan/stream", "POST, OPTIONS"),
    ("PUT", "/health", "GET, HEAD, OPTIONS"),
    ("DELETE", "/scan/stream/scan_x", "GET, HEAD, OPTIONS"),
    ("GET", "/scan/stop/scan_x", "POST, OPTIONS"), ("POST", "/events/results", "GET, OPTIONS"),
])
def test_wrong_method_is_405_with_allow(server, method, path, allowed):
    response = requests.request(method, server.url + path, timeout=10)
    assert_envelope(response, 405)
    assert response.headers["Allow"] == allowed


def test_cap_on_concurrent_scans_is_429():
    with APIServer(StreamManager(max_concurrent=1)) as api:
        first = start(api, SLOW)
        response = requests.post(f"{api.url}/scan/stream", json=SMALL, timeout=10)
        assert_envelope(response, 429)
        assert "max_concurrent=1" in response.json()["error"]["message"]
        requests.post(f"{api.url}/scan/stop/{first}", timeout=10)


def test_openapi_describes_endpoints_and_valid_schemas(server):
    spec = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    assert spec == json.loads(json.dumps(openapi_spec()))
    assert spec["openapi"].startswith("3.")
    assert {"/scan/stream", "/scan/stream/{scan_id}", "/scan/stop/{scan_id}", "/scans",
            "/health", "/openapi.json", "/events/results", "/ws/results"} <= set(spec["paths"])
    for schema in spec["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    assert list(spec["components"]["schemas"]["ScanConfig"]["properties"]) == \
        ScanConfig.setting_names()


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = {**openapi_spec(), "$ref": f"#/components/schemas/{name}"}
    return jsonschema.Draft202012Validator(schema)


def test_every_message_of_a_scan_fits_the_message_schema(server):
    scan_id = finished(server, {**SMALL, "error_rate": 0.1})
    messages = all_messages(server, scan_id)
    assert {"result", "progress", "error", "final"} <= {m["type"] for m in messages}
    message_schema = validator("Message")
    for message in messages:
        message_schema.validate(message)
    broken = {**messages[0], "metadata": {**messages[0]["metadata"], "is_final": True}}
    assert not message_schema.is_valid(broken)
    assert not message_schema.is_valid({**messages[0], "type": "gossip"})
    validator("ScanStatus").validate(
        requests.get(f"{server.url}/scan/stream/{scan_id}", timeout=10).json())
    validator("ScanConfig").validate(ScanConfig().to_dict())
    assert not validator("ScanConfig").is_valid({"symbols": 0})


# -- auth ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def guarded():
    with APIServer(token="s3cret") as running:
        yield running


def test_token_is_required_by_rest_sse_and_websocket(guarded):
    url = guarded.url
    for response in (requests.get(f"{url}/scans", timeout=10),
                     requests.post(f"{url}/scan/stream", json=SMALL, timeout=10),
                     requests.get(f"{url}/scans", params={"token": "s3cret"}, timeout=10),
                     requests.get(f"{url}/scans", headers={"Authorization": "Bearer nope"},
                                  timeout=10),
                     requests.get(f"{url}/events/results?scan_id=x", timeout=10),
                     requests.get(f"{url}/no/such/path", timeout=10)):
        assert_envelope(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    with pytest.raises(HTTPClientError) as raised:
        asyncio.run(ws_session(f"ws://127.0.0.1:{guarded.port}/ws/results"))
    assert raised.value.code == 401
    assert requests.get(f"{url}/health", timeout=10).status_code == 200


def test_a_valid_token_opens_rest_sse_and_websocket(guarded):
    bearer = {"Authorization": "Bearer s3cret"}
    response = requests.post(f"{guarded.url}/scan/stream", json=SMALL, headers=bearer,
                             timeout=10)
    assert response.status_code == 201
    scan_id = response.json()["scan_id"]
    assert requests.get(f"{guarded.url}/scans", headers=bearer, timeout=10).status_code == 200
    for query in ({"token": "s3cret"}, {}):
        text = requests.get(f"{guarded.url}/events/results", timeout=30,
                            params={"scan_id": scan_id, **query},
                            headers={} if query else bearer).text
        assert parse_sse(text)[-1]["event"] == "final"
    ws = f"ws://127.0.0.1:{guarded.port}/ws/results?scan_id={scan_id}"
    frames, _ = asyncio.run(ws_session(f"{ws}&token=s3cret"))
    assert frames[-1]["type"] == "final"
    frames, _ = asyncio.run(ws_session(ws, headers=bearer))
    assert frames[-1]["type"] == "final"


def test_the_token_comes_from_the_environment_at_request_time(server, monkeypatch):
    assert requests.get(f"{server.url}/scans", timeout=10).status_code == 200
    monkeypatch.setenv(API_TOKEN_ENV, "from-env")
    assert_envelope(requests.get(f"{server.url}/scans", timeout=10), 401)
    assert requests.get(f"{server.url}/scans", headers={"Authorization": "Bearer from-env"},
                        timeout=10).status_code == 200
    with pytest.raises(HTTPClientError):
        asyncio.run(ws_session(f"ws://127.0.0.1:{server.port}/ws/results"))
    frames, _ = asyncio.run(ws_session(f"ws://127.0.0.1:{server.port}/ws/results?token=from-env",
                                       send=({"action": "nope"},), until=len))
    assert frames[0]["error"]["field"] == "action"


def test_a_websocket_from_a_foreign_origin_is_refused(server):
    scan_id = finished(server)
    url = f"ws://127.0.0.1:{server.port}/ws/results?scan_id={scan_id}"
    with pytest.raises(HTTPClientError) as raised:
        asyncio.run(ws_session(url, headers={"Origin": "http://evil.example"}))
    assert raised.value.code == 403
    assert json.loads(raised.value.response.body)["error"]["field"] == "Origin"
    frames, _ = asyncio.run(ws_session(url, headers={"Origin": f"http://127.0.0.1:{server.port}"}))
    assert frames[-1]["type"] == "final"


# -- Server-Sent Events ----------------------------------------------------------------------

def test_sse_sends_retry_then_one_event_per_message_and_closes(server):
    scan_id = finished(server)
    text = requests.get(f"{server.url}/events/results", params={"scan_id": scan_id},
                        timeout=30).text
    assert text.startswith("retry: ")
    events = parse_sse(text)[1:]
    messages = all_messages(server, scan_id)
    assert [json.loads(event["data"]) for event in events] == messages
    assert [event["id"] for event in events] == [str(m["metadata"]["seq"]) for m in messages]
    assert [event["event"] for event in events] == [m["type"] for m in messages]


def test_sse_resumes_after_last_event_id_or_since(server):
    scan_id = finished(server)
    url = f"{server.url}/events/results"
    by_header = parse_sse(requests.get(url, params={"scan_id": scan_id, "since": 3},
                                       headers={"Last-Event-ID": "40"}, timeout=30).text)
    by_query = parse_sse(requests.get(url, params={"scan_id": scan_id, "since": 40},
                                      timeout=30).text)
    assert by_header == by_query and by_header[1]["id"] == "41"
    bad = requests.get(url, params={"scan_id": scan_id}, headers={"Last-Event-ID": "x"},
                       timeout=10)
    assert_envelope(bad, 400, "Last-Event-ID")
    assert_envelope(requests.get(url, params={"scan_id": scan_id, "since": 10**6}, timeout=10),
                    400, "since")


def test_sse_sends_heartbeats_while_quiet():
    with APIServer(heartbeat=0.05) as api:
        scan_id = start(api, SLOW)
        with requests.get(f"{api.url}/events/results", params={"scan_id": scan_id},
                          stream=True, timeout=10) as response:
            text = ""
            for chunk in response.iter_content(chunk_size=None, decode_unicode=True):
                text += chunk
                if text.count(": keep-alive\n\n") >= 2:
                    break
        requests.post(f"{api.url}/scan/stop/{scan_id}", timeout=10)
    assert ": keep-alive" in text


def test_a_reader_behind_the_window_gets_behind_window_and_is_disconnected():
    with APIServer(StreamManager(max_retained=20)) as api:
        scan_id = finished(api)
        events = parse_sse(requests.get(f"{api.url}/events/results",
                                        params={"scan_id": scan_id}, timeout=30).text)[1:]
        frames, code = asyncio.run(ws_session(
            f"ws://127.0.0.1:{api.port}/ws/results?scan_id={scan_id}"))
        last_seq = api.manager.get(scan_id).streamer.last_seq
    assert len(events) == 1 and events[0]["event"] == "error"
    error = json.loads(events[0]["data"])
    assert error["data"]["code"] == "behind_window" and error["metadata"]["local"]
    assert error["data"]["resume_from"] == last_seq - 19 == int(events[0]["id"]) + 1
    assert frames == [error] and code == 4000


def test_closing_a_stream_releases_its_subscription(server):
    scan_id = start(server, SLOW)
    streamer = server.manager.get(scan_id).streamer
    with requests.get(f"{server.url}/events/results", params={"scan_id": scan_id},
                      stream=True, timeout=10) as response:
        chunks = response.iter_content(chunk_size=None)
        assert next(chunks).startswith(b"retry: ")
        wait_until(lambda: streamer.subscriber_count == 1)
    wait_until(lambda: streamer.subscriber_count == 0)
    requests.post(f"{server.url}/scan/stop/{scan_id}", timeout=10)


def test_a_stalled_reader_slows_neither_the_scan_nor_other_clients(server):
    scan_id = start(server, {"symbols": 1500, "seed": 3})
    stalled = socket.create_connection(("127.0.0.1", server.port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(f"GET /events/results?scan_id={scan_id} HTTP/1.1\r\nHost: x\r\n\r\n"
                    .encode())
    try:
        with ScanClient(server.url) as client:
            messages = list(client.stream(scan_id))
        assert messages[-1]["type"] == "final"
        assert server.manager.get(scan_id).status == "completed"
    finally:
        stalled.close()
    wait_until(lambda: server.manager.get(scan_id).streamer.subscriber_count == 0)


# -- WebSocket -------------------------------------------------------------------------------

def test_websocket_actions_and_errors_stay_in_band(server):
    scan_id = finished(server)
    frames, code = asyncio.run(ws_session(
        f"ws://127.0.0.1:{server.port}/ws/results",
        send=("{not json", "[1]", {"action": "dance"}, {"action": "stop"},
              {"action": "subscribe", "scan_id": "scan_nope"},
              {"action": "subscribe", "scan_id": scan_id, "since": -1},
              {"action": "subscribe", "scan_id": scan_id, "since": 100})))
    errors = [frame["error"] for frame in frames[:6]]
    assert [error["code"] for error in errors] == [400, 400, 400, 400, 404, 400]
    assert [error["field"] for error in errors] == [None, None, "action", "scan_id", "scan_id",
                                                    "since"]
    assert [m["metadata"]["seq"] for m in frames[6:]] == \
        list(range(101, server.manager.get(scan_id).streamer.last_seq + 1))
    assert frames[-1]["type"] == "final" and code == 1000


def test_websocket_stop_action_ends_the_scan(server):
    scan_id = start(server, SLOW)
    frames, code = asyncio.run(ws_session(
        f"ws://127.0.0.1:{server.port}/ws/results?scan_id={scan_id}",
        send=({"action": "stop"},)))
    assert frames[-1]["type"] == "final" and frames[-1]["data"]["status"] == "stopped"
    assert code == 1000


def test_websocket_subscribe_and_stop_name_what_is_wrong(server):
    frames, _ = asyncio.run(ws_session(
        f"ws://127.0.0.1:{server.port}/ws/results",
        send=({"action": "subscribe", "scan_id": 7}, {"action": "subscribe"},
              {"action": "stop", "scan_id": "scan_nope"}, {"action": "subscribe",
                                                           "scan_id": "x", "since": True}),
        until=lambda frames: len(frames) == 4))
    assert [(f["error"]["code"], f["error"]["field"]) for f in frames] == [
        (400, "scan_id"), (400, "scan_id"), (404, "scan_id"), (400, "since")]


def test_an_unexpected_failure_is_a_500_envelope():
    class Broken(StreamManager):
        def list(self):
            raise RuntimeError("disk on fire")

    with APIServer(Broken()) as api:
        error = assert_envelope(requests.get(f"{api.url}/scans", timeout=10), 500)
        bad_unicode = requests.get(f"{api.url}/scan/stream/x?since=%ff", timeout=10)
    assert "disk" not in error["message"]
    assert "since" in assert_envelope(bad_unicode, 400)["message"]


def test_websocket_without_upgrade_is_400(server):
    assert_envelope(requests.get(f"{server.url}/ws/results", timeout=10), 400)


# -- panel serve --plugins -------------------------------------------------------------------

def test_panel_serve_mounts_the_api_beside_the_dashboard():
    assert any(route[0] == "/scan/stream" for route in ROUTES)
    port = free_port()
    env = {**os.environ, "TECHNIC_MAX_SCANS": "2"}
    env.pop(API_TOKEN_ENV, None)
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "panel"), "serve", "app.py", "--plugins",
         "technic_panel.api.serve", "--port", str(port), "--address", "127.0.0.1",
         f"--allow-websocket-origin=127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _health(url), timeout=90, interval=0.2)
        with ScanClient(url) as client:
            scan_id = client.start({"symbols": 100})
            messages = list(client.stream(scan_id))
        assert messages[-1]["type"] == "final" and messages[-1]["data"]["status"] == "completed"
        assert requests.get(f"{url}/app", timeout=30).status_code == 200
        assert_envelope(requests.get(f"{url}/scan/nothing", timeout=10), 404)
    finally:
        process.terminate()
        process.wait(30)
        process.stderr.close()


def _health(url: str) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=2).json()["status"] == "ok"
    except (requests.ConnectionError, requests.Timeout, ValueError):
        return False


# -- property-based fuzzing from openapi.json ------------------------------------------------

def tame(body):
    """Keep a valid generated scan cheap: few synthetic symbols on threads, no latency."""
    if isinstance(body, dict):
        body.update(source="synthetic", executor="thread", scheduler=None, path=None,
                    symbols=min(body.get("symbols") or 20, 20),
                    latency_ms=min(body.get("latency_ms") or 0, 1))
    return body


def fuzz(operation, mode, url: str, session: requests.Session) -> int:
    """Run hypothesis over one operation's generated requests; return how many were sent."""
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.specs.openapi.checks import response_schema_conformance

    sent = []

    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case):
        if mode is GenerationMode.POSITIVE and operation.path == "/scan/stream":
            case.body = tame(case.body)
        response = case.call(base_url=url, session=session, timeout=10)
        sent.append(response.status_code)
        assert response.status_code < 500, (case.as_curl_command(), response.text)
        if response.status_code >= 400:
            error = response.json()["error"]
            assert error["code"] == response.status_code and isinstance(error["message"], str)
        elif mode is GenerationMode.POSITIVE and "json" in str(response.headers["content-type"]):
            case.validate_response(response, checks=[response_schema_conformance])

    check()
    return len(sent)


def test_fuzzing_the_rest_endpoints_from_openapi_json_gives_no_5xx():
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis.errors import Unsatisfiable

    with APIServer(StreamManager(max_concurrent=4)) as api:
        schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
        session, sent = requests.Session(), 0
        for operation in (result.ok() for result in schema.get_all_operations()):
            for mode in schemathesis.GenerationMode:
                try:
                    sent += fuzz(operation, mode, api.url, session)
                except Unsatisfiable:
                    assert mode is schemathesis.GenerationMode.NEGATIVE  # nothing to break
        session.close()
    assert sent > 200


def test_make_app_without_a_manager_shares_the_default_one():
    with APIServer(app=make_app()) as api:
        scan_id = start(api, {"symbols": 20})
        assert default_manager().get(scan_id).scan_id == scan_id
        assert requests.get(f"{api.url}/health", timeout=10).json()["scans"] >= 1
    default_manager().shutdown()


# --- strategy settings in the body ----------------------------------------------------------

def test_strategy_settings_in_the_body_score_the_scan(server):
    from technic_panel.engine.scoring import Strategy

    settings = {"weight_trend": 2, "stop_atr": 1.5, "buy_threshold": 65}
    scan_id = finished(server, {**SMALL, **settings})
    rows = [m["data"] for m in all_messages(server, scan_id) if m["type"] == "result"]
    assert len(rows) == SMALL["symbols"]
    configured = Strategy(**settings)
    assert all(configured.rescore(row) == row for row in rows)
    assert any(Strategy().rescore(row) != row for row in rows)
    status = requests.get(f"{server.url}/scan/stream/{scan_id}", timeout=10).json()
    assert {key: status["config"][key] for key in settings} == settings


@pytest.mark.parametrize(("body", "field"), [
    ({"buy_threshold": 90}, "buy_threshold"),  # above strong_buy_threshold
    ({"stop_atr": 0}, "stop_atr"),
    ({"weight_volume": -0.5}, "weight_volume"),
    ({"target_atr": 20}, "target_atr"),  # beyond max_target_atr
])
def test_a_bad_strategy_setting_is_400_naming_it(server, body, field):
    response = requests.post(f"{server.url}/scan/stream", json=body, timeout=10)
    error = assert_envelope(response, 400, field)
    assert field in error["message"]


def test_openapi_gives_the_strategy_settings_their_bounds():
    properties = openapi_spec()["components"]["schemas"]["ScanConfig"]["properties"]
    trend = properties["weight_trend"]
    assert (trend["minimum"], trend["maximum"], trend["default"]) == (0, 10, 0.3)
    assert properties["overbought_rsi"]["minimum"] == 50
