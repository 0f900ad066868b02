"""GatewayClient against the fake gateway over 127.0.0.1: no mocks, real sockets."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from ocsched.adapters.gateway import (
    GatewayAuthError,
    GatewayClient,
    GatewayError,
    GatewaySettings,
    GatewayUnavailable,
)
from ocsched.testing.fake_gateway import OVERLOADED_ERROR, FakeGateway

TOKEN = "tok-5ecret-9f3a1c77"
ENV_SETTINGS = dict(token=TOKEN, token_source="OPENCLAW_GATEWAY_TOKEN")


@pytest.fixture(autouse=True)
def no_token_in_logs(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        assert TOKEN not in record.getMessage()


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@asynccontextmanager
async def gateway(
    *, client_token: str | None = TOKEN, **fake_options: Any
) -> AsyncIterator[tuple[FakeGateway, GatewayClient]]:
    async with FakeGateway(token=TOKEN, **fake_options) as fake:
        settings = GatewaySettings(
            url=fake.url, token=client_token, token_source="OPENCLAW_GATEWAY_TOKEN"
        )
        async with GatewayClient(settings) as client:
            yield fake, client


async def raises(kind: type[GatewayError], awaitable: Any) -> GatewayError:
    """Await, expect `kind`, and check the token is in no part of the error."""
    try:
        await awaitable
    except kind as error:
        assert_secret_free(error)
        return error
    raise AssertionError(f"{kind.__name__} not raised")


def assert_secret_free(error: BaseException) -> None:
    seen: BaseException | None = error
    while seen is not None:
        for text in (str(seen), repr(seen), *map(str, seen.args)):
            assert TOKEN not in text
        for value in vars(seen).values():
            assert TOKEN not in repr(value)
        seen = seen.__cause__ or seen.__context__


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- handshake and turns ---------------------------------------------------------------------


def test_the_handshake_asks_for_protocol_4_as_a_trusted_backend_operator():
    async def scenario():
        async with gateway() as (fake, client):
            hello = await client.connect()
            assert hello["type"] == "hello-ok"
            assert set(hello["auth"]["scopes"]) >= {"operator.read", "operator.write"}
            [connect] = fake.calls_of("connect")
            assert connect["minProtocol"] == connect["maxProtocol"] == 4
            assert connect["client"]["id"] == "gateway-client"
            assert connect["client"]["mode"] == "backend"
            assert connect["role"] == "operator"
            assert connect["scopes"] == ["operator.read", "operator.write"]  # no more
            assert connect["auth"] == {"token": "<redacted>"}

    run(scenario())


def test_without_a_token_the_connect_carries_no_auth():
    async def scenario():
        async with FakeGateway(token=None) as fake, GatewayClient(GatewaySettings(fake.url)) as c:
            await c.sessions_list()
            assert "auth" not in fake.calls_of("connect")[0]

    run(scenario())


def test_a_turn_returns_the_final_payload_after_the_accepted_one():
    async def scenario():
        accepted: list[dict] = []
        events: list[dict] = []
        async with gateway(reply_text=lambda message: f"echo: {message}") as (fake, client):
            client.add_listener(events.append)
            final = await client.agent(
                "Run job 1",
                idempotency_key="job1-run1",
                session_key="sched-job-1",
                timeout_s=60,
                on_accepted=accepted.append,
            )
            await asyncio.sleep(0.05)  # events travel on their own queue
        assert final["runId"] == "job1-run1"
        assert final["status"] == "ok"
        assert final["result"]["payloads"][0]["text"] == "echo: Run job 1"
        assert final["result"]["meta"]["agentMeta"]["usage"]["total"] > 0
        assert [payload["status"] for payload in accepted] == ["accepted"]
        assert accepted[0]["sessionKey"] == "agent:main:sched-job-1"
        [sent] = fake.calls_of("agent")
        assert sent == {
            "message": "Run job 1",
            "idempotencyKey": "job1-run1",
            "sessionKey": "sched-job-1",
            "timeout": 60,
        }
        kinds = [(event["event"], event["payload"].get("state")) for event in events]
        assert ("chat", "final") in kinds
        assert all(event["type"] == "event" for event in events)

    run(scenario())


def test_the_same_idempotency_key_returns_the_stored_result_without_a_new_turn():
    async def scenario():
        async with gateway() as (fake, client):
            first = await client.agent("hi", idempotency_key="k1")
            accepted: list[dict] = []
            again = await client.agent("hi", idempotency_key="k1", on_accepted=accepted.append)
            assert again == first
            assert accepted == []  # a replay is one final frame
            assert fake.turns() == 1
            assert len(fake.calls_of("agent")) == 2

    run(scenario())


def test_a_failed_turn_raises_the_gateway_error():
    async def scenario():
        async with gateway() as (fake, client):
            fake.agent_error = OVERLOADED_ERROR
            error = await raises(GatewayError, client.agent("hi", idempotency_key="k-fail"))
            assert error.code == "UNAVAILABLE"
            assert error.retryable and error.retry_after_ms == 1000
            assert "overloaded" in str(error)
            assert error.payload["status"] == "error"

    run(scenario())


def test_agent_wait_tells_an_expired_wait_from_a_finished_run():
    async def scenario():
        async with gateway(reply_delay_s=0.4) as (fake, client):
            turn = asyncio.create_task(client.agent("slow", idempotency_key="k-wait"))
            await asyncio.sleep(0.05)
            expired = await client.agent_wait("k-wait", timeout_ms=50)
            assert expired["status"] == "timeout" and "endedAt" not in expired
            finished = await client.agent_wait("k-wait", timeout_ms=5000)
            assert finished["status"] == "ok" and finished["endedAt"]
            assert finished["terminalReply"]["text"] == "Hello from the fake model."
            assert (await turn)["status"] == "ok"

    run(scenario())


def test_sessions_patch_list_and_chat_history():
    async def scenario():
        async with gateway() as (fake, client):
            patched = await client.sessions_patch("sched-job-2", label="Job 2", thinkingLevel=None)
            assert patched["key"] == "agent:main:sched-job-2"
            assert patched["entry"]["label"] == "Job 2"
            await client.agent("hello", idempotency_key="k-s", session_key="sched-job-2")
            listed = await client.sessions_list(limit=10, search="job-2")
            [row] = listed["sessions"]
            assert row["key"] == "agent:main:sched-job-2" and row["label"] == "Job 2"
            assert row["status"] == "done" and row["lastRunId"] == "k-s"
            history = await client.chat_history("agent:main:sched-job-2", limit=10)
            assert [message["role"] for message in history["messages"]] == ["user", "assistant"]
            assert fake.calls_of("sessions.list") == [{"limit": 10, "search": "job-2"}]

    run(scenario())


@pytest.mark.timing
def test_responses_are_matched_by_id_out_of_order():
    async def scenario():
        async with gateway(reply_delay_s=0.3) as (fake, client):
            turn = asyncio.create_task(client.agent("slow", idempotency_key="k-order"))
            await asyncio.sleep(0.05)
            started = time.monotonic()
            listings = await asyncio.gather(*(client.sessions_list() for _ in range(5)))
            assert time.monotonic() - started < 0.2
            assert not turn.done()
            assert all(listing["count"] == 1 for listing in listings)
            assert (await turn)["runId"] == "k-order"

    run(scenario())


@pytest.mark.timing
def test_slow_listeners_do_not_hold_up_responses():
    async def scenario():
        ticks: list[dict] = []

        async def slow_listener(frame: dict) -> None:
            await asyncio.sleep(1)

        def failing_listener(frame: dict) -> None:
            raise RuntimeError("listener bug")

        async with gateway(tick_interval_ms=50) as (fake, client):
            client.add_listener(slow_listener)
            client.add_listener(failing_listener)
            client.add_listener(lambda frame: ticks.append(frame))
            started = time.monotonic()
            await client.agent("hi", idempotency_key="k-listen")
            await client.sessions_list()
            assert time.monotonic() - started < 0.5
            client.remove_listener(slow_listener)
            await asyncio.sleep(0.3)
        assert any(frame["event"] == "tick" for frame in ticks)

    run(scenario())


def test_protocol_errors_come_back_as_gateway_errors():
    async def scenario():
        async with gateway() as (fake, client):
            error = await raises(GatewayError, client.sessions_patch("k", bogusField=1))
            assert error.code == "INVALID_REQUEST" and not error.retryable
            assert "unexpected property 'bogusField'" in str(error)
            error = await raises(GatewayError, client.call("nosuch.method", {}))
            assert str(error) == "unknown method: nosuch.method"

    run(scenario())


@pytest.mark.timing
def test_a_call_that_gets_no_answer_in_time_is_unavailable():
    async def scenario():
        async with gateway() as (fake, client):
            fake.slow_accept_s = 2
            params = {"message": "hi", "idempotencyKey": "k-slow"}
            started = time.monotonic()
            error = await raises(GatewayUnavailable, client.call("agent", params, timeout_s=0.3))
            assert error.code == "TIMEOUT" and error.retryable
            assert time.monotonic() - started < 1

    run(scenario())


# -- dropped connections -----------------------------------------------------------------------


def test_a_dropped_socket_mid_turn_is_repaired_and_the_turn_not_repeated():
    async def scenario():
        async with gateway(reply_delay_s=0.3) as (fake, client):
            fake.drop_after_accept = True
            accepted: list[dict] = []
            final = await client.agent("hi", idempotency_key="k-drop", on_accepted=accepted.append)
            assert final["status"] == "ok"
            assert fake.turns() == 1
            assert len(fake.calls_of("agent")) == 2
            assert len(fake.calls_of("connect")) == 2
            assert len(accepted) == 1

    run(scenario())


def test_a_caller_can_resend_after_a_drop_without_a_second_turn():
    async def scenario():
        async with gateway(reply_delay_s=0.2) as (fake, client):
            fake.drop_after_accept = True
            params = {"message": "hi", "idempotencyKey": "k-manual"}
            await raises(GatewayUnavailable, client.call("agent", params, expect_final=True))
            final = await client.agent("hi", idempotency_key="k-manual")
            assert final["runId"] == "k-manual"
            assert fake.turns() == 1

    run(scenario())


def test_the_client_reconnects_after_the_gateway_drops_it_between_calls():
    async def scenario():
        async with gateway() as (fake, client):
            await client.sessions_list()
            fake.drop_connections()
            await asyncio.sleep(0.05)
            assert (await client.sessions_list())["count"] == 0
            assert len(fake.calls_of("connect")) == 2

    run(scenario())


def test_a_gateway_silent_for_two_ticks_is_dropped_and_reconnected():
    async def scenario():
        async with gateway(tick_interval_ms=100) as (fake, client):
            await client.sessions_list()
            fake.tick_interval_ms = 60000  # the next tick comes far too late
            await asyncio.sleep(0.4)
            assert "connected=False" in repr(client)
            await client.sessions_list()
            assert len(fake.calls_of("connect")) == 2

    run(scenario())


def test_a_closed_client_can_be_used_again_under_a_new_loop():
    async def use(client: GatewayClient) -> None:
        async with client:
            await client.sessions_list()

    async def scenario():
        async with FakeGateway(token=TOKEN) as fake:
            client = GatewayClient(GatewaySettings(fake.url, **ENV_SETTINGS))
            await use(client)
            await asyncio.to_thread(asyncio.run, use(client))
            assert len(fake.calls_of("sessions.list")) == 2

    run(scenario())


@pytest.mark.timing
def test_a_gateway_that_is_down_is_unavailable_quickly():
    async def scenario():
        settings = GatewaySettings(f"http://127.0.0.1:{free_port()}", **ENV_SETTINGS)
        async with GatewayClient(settings) as client:
            started = time.monotonic()
            error = await raises(GatewayUnavailable, client.sessions_list())
            assert error.retryable
            await raises(GatewayUnavailable, client.invoke_tool("message", {"message": "x"}))
            assert await client.health() is False
            assert time.monotonic() - started < 3

    run(scenario())


# -- auth --------------------------------------------------------------------------------------


def test_a_wrong_token_names_the_setting_to_fix_and_is_not_retried():
    async def scenario():
        async with gateway(client_token="not-the-token") as (fake, client):
            error = await raises(GatewayAuthError, client.sessions_list())
            assert str(error) == (
                "The gateway refused the token from OPENCLAW_GATEWAY_TOKEN (gateway token "
                "mismatch); set OPENCLAW_GATEWAY_TOKEN or OPENCLAW_GATEWAY_TOKEN_PATH to the "
                "gateway's token"
            )
            assert "not-the-token" not in str(error) + repr(error)
            assert not error.retryable
            assert len(fake.calls_of("connect")) == 1
            error = await raises(GatewayAuthError, client.invoke_tool("sessions_list", {}))
            assert error.status == 401 and "OPENCLAW_GATEWAY_TOKEN" in str(error)

    run(scenario())


def test_a_refused_token_from_a_file_names_the_file(tmp_path: Path):
    token_file = tmp_path / "token"
    token_file.write_text("wrong-token\n")
    environ = {"OPENCLAW_GATEWAY_TOKEN_PATH": str(token_file), "HOME": str(tmp_path)}

    async def scenario():
        async with FakeGateway(token=TOKEN) as fake:
            settings = GatewaySettings.from_environment(
                {**environ, "OPENCLAW_GATEWAY_URL": fake.url}
            )
            async with GatewayClient(settings) as client:
                error = await raises(GatewayAuthError, client.connect())
                assert f"OPENCLAW_GATEWAY_TOKEN_PATH file {token_file}" in str(error)
                assert "wrong-token" not in str(error)

    run(scenario())


def test_a_missing_token_says_none_is_configured():
    async def scenario():
        async with gateway(client_token=None) as (fake, client):
            error = await raises(GatewayAuthError, client.agent("hi", idempotency_key="k"))
            assert "none is configured (gateway token missing)" in str(error)
            assert "OPENCLAW_GATEWAY_TOKEN_PATH" in str(error)

    run(scenario())


def test_the_token_appears_in_no_repr():
    settings = GatewaySettings("http://127.0.0.1:1", **ENV_SETTINGS)
    client = GatewayClient(settings)
    for text in (repr(settings), str(settings), repr(client), str(client)):
        assert TOKEN not in text
    assert "OPENCLAW_GATEWAY_TOKEN" in repr(client)


def test_error_text_quoted_from_the_gateway_is_redacted():
    async def scenario():
        async with gateway(reply_text="unused") as (fake, client):
            fake.agent_error = {"code": "UNAVAILABLE", "message": f"provider said {TOKEN}"}
            error = await raises(GatewayError, client.agent("hi", idempotency_key="k-leak"))
            assert "provider said ***" in str(error)

    run(scenario())


# -- HTTP --------------------------------------------------------------------------------------


def test_tools_invoke_sends_messages_once_per_idempotency_key():
    async def scenario():
        async with gateway() as (fake, client):
            args = {"action": "send", "message": "job done", "channel": "telegram", "target": "42"}
            first = await client.invoke_tool("message", args, idempotency_key="m-1")
            again = await client.invoke_tool("message", args, idempotency_key="m-1")
            assert first == again and first["ok"] is True
            [sent] = fake.messages_sent()
            assert sent["message"] == "job done" and sent["sessionKey"] == "main"
            request = fake.calls_of("POST /tools/invoke")[0]
            assert request["headers"]["authorization"] == f"Bearer {TOKEN}"
            assert request["body"] == {
                "tool": "message",
                "args": args,
                "sessionKey": "main",
                "idempotencyKey": "m-1",
            }
            await client.agent("hi", idempotency_key="k-t", session_key="s1")
            listed = await client.invoke_tool("sessions_list", {"activeMinutes": 60})
            assert [row["key"] for row in listed["result"]["details"]["sessions"]] == [
                "agent:main:s1"
            ]
            error = await raises(GatewayError, client.invoke_tool("exec", {"command": "ls"}))
            assert error.status == 404 and not error.retryable
            assert str(error).startswith("Gateway exec failed (404): ")

    run(scenario())


def test_chat_completions_send_the_contract_headers_and_body():
    async def scenario():
        async with gateway(reply_text="Hello there") as (fake, client):
            completion = await client.chat_completion(
                [{"role": "user", "content": "Say hi"}],
                model="openclaw/main",
                session_key="sched-http-1",
                user="job-42",
                model_override="fake/fake-model",
                agent_id="main",
            )
            assert completion["choices"][0]["message"]["content"] == "Hello there"
            [request] = fake.calls_of("POST /v1/chat/completions")
            headers = request["headers"]
            assert headers["authorization"] == f"Bearer {TOKEN}"
            assert headers["content-type"].startswith("application/json")
            assert headers["x-openclaw-session-key"] == "sched-http-1"
            assert headers["x-openclaw-model"] == "fake/fake-model"
            assert headers["x-openclaw-agent-id"] == "main"
            assert headers["x-openclaw-scopes"] == "operator.write"
            assert request["body"] == {
                "model": "openclaw/main",
                "messages": [{"role": "user", "content": "Say hi"}],
                "stream": False,
                "user": "job-42",
            }
            session = await client.session("agent:main:sched-http-1")
            assert session["messageCount"] == 2
            missing = await raises(GatewayError, client.session("agent:main:nope"))
            assert missing.status == 404
            assert fake.turns() == 1

    run(scenario())


def test_http_5xx_and_529_are_retryable_errors_with_their_status():
    async def scenario():
        async with gateway() as (fake, client):
            fake.http_status = 503
            error = await raises(GatewayError, client.invoke_tool("sessions_list", {}))
            assert error.status == 503 and error.retryable
            fake.http_status = 529
            messages = [{"role": "user", "content": "hi"}]
            error = await raises(GatewayError, client.chat_completion(messages))
            assert error.status == 529 and error.retryable and error.code == "OVERLOADED"
            assert error.retry_after_ms == 1000
            assert str(error).startswith("Chat completions failed (529): ")
            assert fake.turns() == 0

    run(scenario())


def test_health_is_true_only_for_a_2xx():
    async def scenario():
        async with gateway() as (fake, client):
            assert await client.health() is True
            fake.healthy = False
            assert await client.health() is False
            fake.http_status = 500  # probes are not forced
            fake.healthy = True
            assert await client.health() is True

    run(scenario())


# -- settings ----------------------------------------------------------------------------------


def test_the_token_comes_from_the_env_var_before_the_file(tmp_path: Path):
    token_file = tmp_path / "token"
    token_file.write_text("  from-file \n")
    environ = {"OPENCLAW_GATEWAY_TOKEN_PATH": str(token_file)}
    settings = GatewaySettings.from_environment({**environ, "OPENCLAW_GATEWAY_TOKEN": "from-env"})
    assert (settings.token, settings.token_source) == ("from-env", "OPENCLAW_GATEWAY_TOKEN")
    settings = GatewaySettings.from_environment(environ)
    assert settings.token == "from-file"
    assert settings.token_source == f"OPENCLAW_GATEWAY_TOKEN_PATH file {token_file}"


def test_the_default_token_file_is_under_home_and_may_be_absent(tmp_path: Path):
    settings = GatewaySettings.from_environment({"HOME": str(tmp_path)})
    assert settings == GatewaySettings("http://127.0.0.1:18789")
    credentials = tmp_path / ".openclaw" / "credentials"
    credentials.mkdir(parents=True)
    (credentials / ".gateway-token").write_text("t0k\n")
    assert GatewaySettings.from_environment({"HOME": str(tmp_path)}).token == "t0k"
    (credentials / ".gateway-token").write_text("\n")
    assert GatewaySettings.from_environment({"HOME": str(tmp_path)}).token is None


def test_the_url_setting_gives_both_http_and_ws_urls(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENCLAW_GATEWAY_URL", "http://127.0.0.1:18790/")
    monkeypatch.setenv("OPENCLAW_GATEWAY_TOKEN", "x")
    settings = GatewayClient().settings
    assert settings.http_url == "http://127.0.0.1:18790"
    assert settings.ws_url == "ws://127.0.0.1:18790/"
    assert GatewaySettings("wss://gw.example:443").http_url == "https://gw.example:443"


# -- the fake as a process -----------------------------------------------------------------------


def test_the_fake_runs_as_a_process_until_sigterm():
    command = [sys.executable, "-m", "ocsched.testing.fake_gateway", "--token", TOKEN]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:")

            async def scenario():
                async with GatewayClient(GatewaySettings(url, **ENV_SETTINGS)) as client:
                    assert await client.health()
                    final = await client.agent("hi", idempotency_key="k-proc")
                    assert final["status"] == "ok"

            run(scenario())
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
