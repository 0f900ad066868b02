"""Agent turns through a gateway that fails: the fake's faults (5xx and 529 answers before
acceptance, sockets dropped before and after acceptance, slow answers) against
`GatewayClient.agent`, then the chaos script's small version (a daemon, 20 agent jobs)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ocsched.adapters.gateway import (
    GatewayClient,
    GatewayError,
    GatewaySettings,
    GatewayUnavailable,
)
from ocsched.testing.fake_gateway import FakeGateway

from .conftest import load_script

TOKEN = "tok-f4ults-77c1"
SEED = 20261125


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def client_for(fake: FakeGateway) -> GatewayClient:
    settings = GatewaySettings(fake.url, token=TOKEN, token_source="OPENCLAW_GATEWAY_TOKEN")
    return GatewayClient(settings, backoff_initial_s=0.05, backoff_max_s=0.5)


async def turns_through_faults(count: int, rate: float) -> tuple[dict, dict, dict]:
    """`count` concurrent turns, each its own key, through faults at `rate`; what each call
    gave (a payload or the error), and the fake's turns and final statuses by key."""
    async with FakeGateway(
        token=TOKEN, reply_delay_s=0.05, fault_rate=rate, fault_seed=SEED, slow_s=0.3
    ) as fake:
        async with client_for(fake) as client:

            async def turn(key: str) -> Any:
                try:
                    return await client.agent(f"turn {key}", idempotency_key=key, wait_s=15)
                except GatewayError as error:
                    return error

            keys = [f"run-{index:02d}" for index in range(count)]
            results = dict(zip(keys, await asyncio.gather(*map(turn, keys)), strict=True))
        await asyncio.sleep(0.2)  # turns cut off from their caller end on their own
        return results, fake.turns_by_key(), fake.turn_statuses()


def test_turns_through_30_percent_faults_end_once_each_with_their_true_outcome():
    results, turns, statuses = run(turns_through_faults(40, 0.3))
    failed = {key: str(r) for key, r in results.items() if isinstance(r, GatewayError)}
    succeeded_but_failed = sorted(key for key in failed if statuses.get(key) == "ok")
    assert succeeded_but_failed == [], failed
    assert failed == {}
    assert all(result["status"] == "ok" for result in results.values())
    assert turns == dict.fromkeys(results, 1)


def test_refusals_before_acceptance_are_asked_again_with_the_same_key():
    async def scenario():
        async with FakeGateway(token=TOKEN) as fake, client_for(fake) as client:
            await client.connect()
            fake.set_faults(1.0, kinds=["529", "5xx"])  # every request refused, none run
            turn = asyncio.create_task(client.agent("hi", idempotency_key="k-r", wait_s=10))
            await asyncio.sleep(0.6)
            assert fake.turns() == 0 and not turn.done()
            fake.set_faults(0.0)
            final = await turn
        assert final["status"] == "ok"
        assert fake.turns_by_key() == {"k-r": 1}
        sent = fake.calls_of("agent")
        assert len(sent) >= 3 and {call["idempotencyKey"] for call in sent} == {"k-r"}
        assert len(fake.calls_of("connect")) == 1  # a refusal is not a broken connection

    run(scenario())


def test_a_turn_that_failed_is_a_definite_failure_and_not_asked_again():
    from ocsched.testing.fake_gateway import OVERLOADED_ERROR

    async def scenario():
        async with FakeGateway(token=TOKEN) as fake, client_for(fake) as client:
            fake.agent_error = OVERLOADED_ERROR  # the turn ran and the provider failed it
            try:
                await client.agent("hi", idempotency_key="k-f", wait_s=10)
            except GatewayError as error:
                assert error.retryable and error.payload["status"] == "error"
            else:
                raise AssertionError("no error")
            assert len(fake.calls_of("agent")) == 1
            assert fake.calls_of("agent.wait") == []

    run(scenario())


def cut_off_after_acceptance(fake: FakeGateway, kinds: list[str]):
    """An `on_accepted` that makes every later connect and request fail with `kinds` (the
    fake drops the socket right after the accepted frame)."""
    fake.drop_after_accept = True

    def accepted(payload: dict) -> None:
        fake.set_faults(1.0, kinds=kinds)

    return accepted


def test_an_accepted_turn_cut_off_until_the_end_is_settled_by_agent_wait():
    async def scenario():
        fake = FakeGateway(token=TOKEN, reply_delay_s=0.5, reply_text="done late")
        async with fake, client_for(fake) as client:
            on_accepted = cut_off_after_acceptance(fake, ["drop_before", "529"])
            turn = asyncio.create_task(
                client.agent("hi", idempotency_key="k-w", wait_s=4, on_accepted=on_accepted)
            )
            await asyncio.sleep(3.15)  # asking with `agent` stopped at 3 s
            assert not turn.done() and fake.calls_of("agent.wait") == []
            fake.set_faults(0.0)
            final = await turn
        assert (final["status"], final["result"]["payloads"][0]["text"]) == ("ok", "done late")
        assert len(fake.calls_of("agent.wait")) == 1
        assert fake.turns_by_key() == {"k-w": 1}

    run(scenario())


@pytest.mark.timing
def test_no_answer_by_the_deadline_is_an_error_saying_the_outcome_is_unknown():
    async def scenario():
        fake = FakeGateway(token=TOKEN, reply_delay_s=0.3)
        async with fake, client_for(fake) as client:
            on_accepted = cut_off_after_acceptance(fake, ["drop_before", "5xx"])
            started = asyncio.get_running_loop().time()
            try:
                await client.agent("hi", idempotency_key="k-u", wait_s=2, on_accepted=on_accepted)
            except GatewayUnavailable as error:
                failure = error
            else:
                raise AssertionError("no error")
            elapsed = asyncio.get_running_loop().time() - started
        assert failure.code == "OUTCOME_UNKNOWN" and 1.9 < elapsed < 2.5
        message = str(failure)
        assert message.startswith(
            "The outcome of agent turn k-u is unknown: the gateway at http://127.0.0.1:"
        )
        assert "accepted the turn but gave no final answer within 2s" in message
        assert "and agent.wait got no answer either" in message
        assert TOKEN not in message + repr(failure.args)
        assert fake.turns_by_key() == {"k-u": 1} and fake.turn_statuses() == {"k-u": "ok"}

    run(scenario())


def test_the_chaos_script_with_20_agent_jobs_at_30_percent_faults():
    chaos = load_script("scripts/chaos/gateway_faults.py")
    result = chaos.run_chaos(jobs=20, fault_rate=0.3, seed=10, lead=1.5, max_wait=12)
    assert chaos.failures(result) == []
    assert (result["runs"], result["statuses"], result["log_errors"]) == (20, {"ok": 20}, 0)
    assert set(result["faults"]) == {"5xx", "529", "drop_before", "drop_after", "slow"}
