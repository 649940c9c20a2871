"""The LLM gateway, over real HTTP: SDK clients -> gateway -> the scripted model (or a small real upstream)."""

from __future__ import annotations

import asyncio
import json
import socket
import textwrap
import threading
import time

import anthropic
import httpx
import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from clawfleet.llm.gateway import GatewayServer
from clawfleet.llm.scripted import Script, ScriptedServer
from clawfleet.llm.serve import BackgroundServer
from clawfleet.llm.transcript import read_transcript, redact, script_from_transcript
from clawfleet.project import Project

from conftest import claw, write_config

REAL_KEY = "sk-upstream-REALKEY-0123456789abcdef"
SCRIPT = Script.from_rules([
    {"name": "slugify", "match": "Add a slugify", "steps": [
        {"command": "ls"}, {"text": "a free text reply that is long enough to stream in pieces"},
        {"done": "Added slugify."}]},
    {"name": "slow", "match": "be slow", "steps": [{"text": "late", "delay": 1.5}]},
    {"name": "denied", "match": "bad key", "steps": [{"error": 401, "message": "invalid x-api-key"}]},
])


def conversation(first: str, turns: int) -> list[dict]:
    messages = [{"role": "user", "content": first}]
    for n in range(turns):
        messages += [{"role": "assistant", "content": f"reply {n}"}, {"role": "user", "content": f"output {n}"}]
    return messages


def configure(project: Project, gateway_toml: str) -> None:
    with open(project.config_path, "a") as handle:
        handle.write("\n" + textwrap.dedent(gateway_toml))
    project.__dict__.pop("config", None)


def scripted_upstream(url: str, **extra: str) -> str:
    lines = [f'base_url = "{url}/v1"', 'apis = ["chat", "messages", "responses"]', 'key_env = "CLAW_TEST_UPSTREAM_KEY"']
    lines += [f"{key} = {value}" for key, value in extra.items()]
    return "[gateway.upstreams.scripted]\n" + "\n".join(lines) + "\n"


def new_attempt(project: Project, title: str = "Add a slugify helper"):
    task = project.store.add_task(title)
    return project.store.start_attempt(task.id, agent="builtin", branch_for=lambda n: f"claw/{task.id}-{n}",
                                       base_commit="0" * 40)


@pytest.fixture(scope="module")
def scripted():
    with ScriptedServer(SCRIPT) as server:
        yield server


@pytest.fixture
def setup(project, scripted, monkeypatch):
    """A project whose gateway forwards to the scripted model, priced, with one running attempt."""
    monkeypatch.setenv("CLAW_TEST_UPSTREAM_KEY", REAL_KEY)
    configure(project, scripted_upstream(scripted.url) + """
        [gateway.prices.scripted]
        input = 3.0
        output = 15.0
        """)
    return project, new_attempt(project)


@pytest.fixture
def gateway(setup):
    project, _ = setup
    with GatewayServer(project.root) as server:
        yield server


def openai_for(gateway: GatewayServer, attempt_id: int) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.attempt_url(attempt_id) + "/v1", api_key="unused",
                         max_retries=0, timeout=10)


def anthropic_for(gateway: GatewayServer, attempt_id: int) -> anthropic.Anthropic:
    # The key way: the plain gateway URL, the attempt's own key.
    return anthropic.Anthropic(base_url=gateway.url, api_key=gateway.attempt_key(attempt_id),
                               max_retries=0, timeout=10)


def calls(project: Project, gateway: GatewayServer, expect: int = 1, **where):
    """The recorded calls, once `expect` of them are there: a call is recorded just after its
    last byte is sent, so the client can be a moment ahead of the record."""
    deadline = time.monotonic() + 5
    while True:
        gateway.gateway.meter.flush()
        rows = project.store.llm_calls(**where)
        if len(rows) >= expect or time.monotonic() > deadline:
            return rows
        time.sleep(0.01)


# -- the three APIs, through the official SDKs ---------------------------------------------

def test_openai_chat_through_the_gateway_is_metered_and_the_real_key_swapped_in(setup, gateway, scripted):
    project, attempt = setup
    direct = openai.OpenAI(base_url=scripted.openai_base_url, api_key="x", max_retries=0)
    via = openai_for(gateway, attempt.id)
    for turn in range(3):
        expected = direct.chat.completions.create(model="scripted", messages=conversation("Add a slugify helper", turn))
        got = via.chat.completions.create(model="scripted", messages=conversation("Add a slugify helper", turn))
        assert got.choices[0].message.content == expected.choices[0].message.content
        assert got.usage.completion_tokens == expected.usage.completion_tokens
    [call, *_] = rows = calls(project, gateway, expect=3, attempt_id=attempt.id)
    assert len(rows) == 3 and {r.status for r in rows} == {"ok"}
    assert (call.api, call.model, call.upstream, call.stream, call.http_status) == ("chat", "scripted", "scripted", False, 200)
    assert call.task_id == attempt.task_id and call.input_tokens > 0 and call.output_tokens > 0
    assert call.cost == pytest.approx((call.input_tokens * 3 + call.output_tokens * 15) / 1e6)
    assert call.latency_ms > 0 and call.ttft_ms is None
    # The upstream saw the real key, never the attempt's.
    assert scripted.requests[-1]["body"]["model"] == "scripted"


def test_openai_stream_passes_through_and_usage_is_read_without_showing_it_to_the_client(setup, gateway):
    project, attempt = setup
    chunks = list(openai_for(gateway, attempt.id).chat.completions.create(
        model="scripted", stream=True, messages=conversation("Add a slugify helper", 1)))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "a free text reply that is long enough to stream in pieces"
    assert all(c.choices for c in chunks), "the usage chunk the gateway asked for was passed on"
    [call] = calls(project, gateway, attempt_id=attempt.id)
    assert call.stream and call.status == "ok" and call.output_tokens == len(text) // 4
    assert 0 < call.ttft_ms <= call.latency_ms


def test_openai_stream_keeps_the_usage_chunk_a_client_asked_for(setup, gateway):
    project, attempt = setup
    chunks = list(openai_for(gateway, attempt.id).chat.completions.create(
        model="scripted", stream=True, stream_options={"include_usage": True},
        messages=conversation("Add a slugify helper", 2)))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    [call] = calls(project, gateway, attempt_id=attempt.id)
    assert call.output_tokens == chunks[-1].usage.completion_tokens


def test_anthropic_messages_streamed_and_not(setup, gateway):
    project, attempt = setup
    client = anthropic_for(gateway, attempt.id)
    reply = client.messages.create(model="scripted", max_tokens=100, messages=conversation("Add a slugify helper", 2))
    assert reply.content[0].text == "DONE: Added slugify."
    with client.messages.stream(model="scripted", max_tokens=100,
                                messages=conversation("Add a slugify helper", 1)) as stream:
        streamed = stream.get_final_message()
    assert streamed.content[0].text == "a free text reply that is long enough to stream in pieces"
    plain, live = calls(project, gateway, expect=2, attempt_id=attempt.id)
    assert (plain.api, plain.stream, live.stream) == ("messages", False, True)
    assert plain.input_tokens == reply.usage.input_tokens and plain.output_tokens == reply.usage.output_tokens
    assert live.input_tokens == streamed.usage.input_tokens and live.output_tokens == streamed.usage.output_tokens
    assert live.ttft_ms is not None and live.status == "ok"


def gemini_contents(first: str, turns: int) -> list[dict]:
    contents = [{"role": "user", "parts": [{"text": first}]}]
    for n in range(turns):
        contents += [{"role": "model", "parts": [{"text": f"reply {n}"}]},
                     {"role": "user", "parts": [{"text": f"output {n}"}]}]
    return contents


def test_gemini_api_streamed_and_not_is_metered_and_token_counts_pass_through(project, scripted, monkeypatch):
    monkeypatch.setenv("CLAW_TEST_GEMINI_KEY", REAL_KEY)
    configure(project, f"""
        [gateway.upstreams.google]
        base_url = "{scripted.url}/v1beta"
        apis = ["gemini"]
        key_env = "CLAW_TEST_GEMINI_KEY"
        [gateway.prices."gemini-*"]
        input = 1.0
        output = 2.0
        """)
    attempt = new_attempt(project)
    with GatewayServer(project.root) as gateway:
        # As the Gemini CLI calls it: its base URL, the key in x-goog-api-key, the model in the path.
        headers = {"x-goog-api-key": gateway.attempt_key(attempt.id)}
        base = f"{gateway.url}/v1beta/models/gemini-test"
        plain = httpx.post(f"{base}:generateContent", headers=headers, timeout=10,
                           json={"contents": gemini_contents("Add a slugify helper", 2)})
        assert plain.status_code == 200, plain.text
        assert plain.json()["candidates"][0]["content"]["parts"][0]["text"] == "DONE: Added slugify."
        with httpx.stream("POST", f"{base}:streamGenerateContent?alt=sse", headers=headers, timeout=10,
                          json={"contents": gemini_contents("Add a slugify helper", 1)}) as response:
            events = [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]
        assert len(events) > 1   # passed on event by event
        assert "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in events) == \
            "a free text reply that is long enough to stream in pieces"
        counted = httpx.post(f"{base}:countTokens", headers=headers, timeout=10,
                             json={"contents": gemini_contents("Add a slugify helper", 0)})
        assert counted.status_code == 200 and counted.json()["totalTokens"] > 0
        refused = httpx.post(f"{base}:generateContent", headers={"x-goog-api-key": "claw-1.forged"}, timeout=10,
                             json={"contents": gemini_contents("Add a slugify helper", 0)})
        assert refused.status_code == 401 and refused.json()["error"]["status"] == "UNAUTHENTICATED"
        rows = calls(project, gateway, expect=2, attempt_id=attempt.id)
    # Token counting is not a model call: two calls metered, with the upstream's own counts and a price.
    assert [(r.api, r.stream, r.status) for r in rows] == [("gemini", False, "ok"), ("gemini", True, "ok")]
    usage = plain.json()["usageMetadata"]
    assert (rows[0].input_tokens, rows[0].output_tokens) == (usage["promptTokenCount"], usage["candidatesTokenCount"])
    assert rows[1].output_tokens == events[-1]["usageMetadata"]["candidatesTokenCount"]
    assert rows[1].ttft_ms is not None and all(r.cost > 0 and r.model == "gemini-test" for r in rows)
    # The upstream saw the real key, never the attempt's.
    seen = [r for r in scripted.requests if "gemini-test" in r["path"]]
    assert len(seen) == 2   # countTokens is not recorded by the scripted server


def test_model_lists_pass_through_unmetered(setup, gateway):
    project, attempt = setup
    listed = openai_for(gateway, attempt.id).models.list()
    assert [m.id for m in listed.data] == ["scripted"]
    assert httpx.get(f"{gateway.url}/v1/models", timeout=5).status_code == 401   # still needs an attempt key
    gateway.gateway.meter.flush()
    assert project.store.llm_calls(attempt_id=attempt.id) == []


# A small real upstream for what the scripted model does not do (yet): the Responses API,
# flaky and broken replies, key checks, a slow stream.
class Upstream(BackgroundServer):
    def __init__(self) -> None:
        self.seen: list[dict] = []
        self.fail_first = 0
        self.stream_closed = threading.Event()
        app = FastAPI()

        @app.post("/v1/responses")
        async def responses(request: Request):
            body = await request.json()
            self.seen.append({"headers": dict(request.headers), "body": body})
            response = {"id": "resp_1", "object": "response", "created_at": 1, "status": "completed",
                        "model": body["model"], "output": [{"type": "message", "id": "msg_1", "status": "completed",
                        "role": "assistant", "content": [{"type": "output_text", "text": "hello from responses",
                                                          "annotations": []}]}],
                        "usage": {"input_tokens": 12, "output_tokens": 4, "total_tokens": 16,
                                  "input_tokens_details": {"cached_tokens": 8},
                                  "output_tokens_details": {"reasoning_tokens": 0}},
                        "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}
            if not body.get("stream"):
                return response

            async def events():
                created = {**response, "status": "in_progress", "output": [], "usage": None}
                yield f"event: response.created\ndata: {json.dumps({'type': 'response.created', 'sequence_number': 0, 'response': created})}\n\n"
                for n, piece in enumerate(["hello ", "from ", "responses"]):
                    delta = {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0,
                             "content_index": 0, "delta": piece, "sequence_number": n + 1, "logprobs": []}
                    yield f"event: response.output_text.delta\ndata: {json.dumps(delta)}\n\n"
                done = {"type": "response.completed", "sequence_number": 9, "response": response}
                yield f"event: response.completed\ndata: {json.dumps(done)}\n\n"
                if body.get("input") == "linger":   # an upstream slow to close after its end event
                    try:
                        await asyncio.sleep(5)
                    finally:
                        self.stream_closed.set()
            return StreamingResponse(events(), media_type="text/event-stream")

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            body = await request.json()
            self.seen.append({"headers": dict(request.headers), "body": body})
            kind = body["messages"][0]["content"]
            if request.headers.get("authorization") != f"Bearer {REAL_KEY}":
                return JSONResponse({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                               "code": "invalid_api_key", "param": None}}, status_code=401)
            if self.fail_first:
                self.fail_first -= 1
                return JSONResponse({"error": {"message": "overloaded", "type": "server_error"}},
                                    status_code=503, headers={"retry-after-ms": "10"})
            if kind == "garbage":
                return Response("<html>502 bad gateway</html>", media_type="text/html")
            if kind == "slow stream":
                async def slow():
                    try:
                        for n in range(200):
                            chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                                     "choices": [{"index": 0, "delta": {"content": f"{n} "}, "finish_reason": None}]}
                            yield f"data: {json.dumps(chunk)}\n\n"
                            await asyncio.sleep(0.02)
                    finally:
                        self.stream_closed.set()
                return StreamingResponse(slow(), media_type="text/event-stream")
            return {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "fine"}}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}

        super().__init__(app, name="test upstream")


@pytest.fixture
def upstream(project, monkeypatch):
    monkeypatch.setenv("CLAW_TEST_UPSTREAM_KEY", REAL_KEY)
    with Upstream() as server:
        configure(project, f"""
            [gateway]
            retries = 2
            retry_backoff = 0.01
            [gateway.upstreams.real]
            base_url = "{server.url}/v1"
            apis = ["chat", "responses"]
            key_env = "CLAW_TEST_UPSTREAM_KEY"
            """)
        yield server


def test_responses_api_streamed_and_not_through_the_sdk(project, upstream):
    attempt = new_attempt(project)
    with GatewayServer(project.root) as gateway:
        client = openai_for(gateway, attempt.id)
        reply = client.responses.create(model="gpt-test", input="say hello")
        assert reply.output_text == "hello from responses"
        events = list(client.responses.create(model="gpt-test", input="say hello", stream=True))
        assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "hello from responses"
        plain, live = calls(project, gateway, expect=2)
    assert (plain.api, plain.input_tokens, plain.output_tokens, plain.cached_tokens) == ("responses", 12, 4, 8)
    assert (live.stream, live.status, live.input_tokens, live.cached_tokens) == (True, "ok", 12, 8)
    assert live.ttft_ms is not None
    assert upstream.seen[-1]["headers"]["authorization"] == f"Bearer {REAL_KEY}"


def test_retries_a_503_then_answers(project, upstream):
    attempt = new_attempt(project)
    upstream.fail_first = 2
    with GatewayServer(project.root) as gateway:
        reply = openai_for(gateway, attempt.id).chat.completions.create(model="m", messages=conversation("hi", 0))
        [call] = calls(project, gateway)
    assert reply.choices[0].message.content == "fine"
    assert len(upstream.seen) == 3 and call.status == "ok" and call.http_status == 200


def test_an_invalid_upstream_key_is_passed_on_as_is_and_never_recorded(project, upstream, monkeypatch):
    wrong = "sk-wrong-key-abcdefghijklmnop"
    monkeypatch.setenv("CLAW_TEST_UPSTREAM_KEY", wrong)
    attempt = new_attempt(project)
    with GatewayServer(project.root) as gateway:
        with pytest.raises(openai.AuthenticationError) as error:
            openai_for(gateway, attempt.id).chat.completions.create(model="m", messages=conversation("hi", 0))
        [call] = calls(project, gateway)
    assert error.value.body["message"] == "Incorrect API key provided" and error.value.body["code"] == "invalid_api_key"
    assert upstream.seen[-1]["headers"]["authorization"] == f"Bearer {wrong}"
    assert (call.status, call.http_status, call.error) == ("error", 401, "Incorrect API key provided")
    transcript = (project.attempt_dir(attempt.id) / "transcript.jsonl").read_text()
    assert wrong not in transcript and "claw-" not in transcript
    assert wrong not in json.dumps([vars(c) for c in project.store.llm_calls()])


def test_a_malformed_upstream_reply_is_a_clear_502(project, upstream):
    attempt = new_attempt(project)
    with GatewayServer(project.root) as gateway:
        with pytest.raises(openai.APIStatusError) as error:
            openai_for(gateway, attempt.id).chat.completions.create(model="m", messages=conversation("garbage", 0))
        [call] = calls(project, gateway)
    assert error.value.status_code == 502
    assert "upstream 'real' answered 200 with a body that is not a JSON object: '<html>502" in error.value.message
    assert call.status == "malformed"


def test_a_client_leaving_mid_stream_closes_the_upstream_stream_and_is_recorded(project, upstream):
    attempt = new_attempt(project)
    with GatewayServer(project.root) as gateway:
        url = gateway.attempt_url(attempt.id) + "/v1/chat/completions"
        with httpx.stream("POST", url, json={"model": "m", "stream": True, "messages": conversation("slow stream", 0)},
                          timeout=10) as response:
            lines = response.iter_lines()
            first = next(line for line in lines if line.startswith("data:"))
        assert '"0 "' in first
        assert upstream.stream_closed.wait(5), "the gateway kept reading from the upstream"
        [call] = calls(project, gateway)
    assert (call.status, call.error) == ("disconnected", "the client went away mid-stream")
    assert call.ttft_ms is not None and call.latency_ms < 3000


def test_a_client_leaving_after_the_end_event_is_a_complete_call(project, upstream):
    # Codex hangs up as soon as it reads response.completed, often before the upstream closes.
    attempt = new_attempt(project)
    with GatewayServer(project.root) as gateway:
        url = gateway.attempt_url(attempt.id) + "/v1/responses"
        with httpx.stream("POST", url, json={"model": "m", "stream": True, "input": "linger"}, timeout=10) as response:
            next(line for line in response.iter_lines() if "response.completed" in line)
        assert upstream.stream_closed.wait(5), "the gateway kept reading from the upstream"
        [call] = calls(project, gateway)
    assert (call.status, call.error) == ("ok", None)
    assert (call.input_tokens, call.output_tokens, call.cached_tokens) == (12, 4, 8)


# -- bad input -----------------------------------------------------------------------------

def test_unknown_or_missing_attempt_key_is_a_401_that_says_what_to_use(setup, gateway):
    project, attempt = setup
    with pytest.raises(openai.AuthenticationError) as error:
        openai.OpenAI(base_url=gateway.url + "/v1", api_key=f"claw-{attempt.id}.{'0' * 32}",
                      max_retries=0).chat.completions.create(model="scripted", messages=conversation("x", 0))
    assert "unknown attempt key" in error.value.message
    with pytest.raises(anthropic.AuthenticationError) as error:
        anthropic.Anthropic(base_url=gateway.url, api_key="sk-ant-mine", max_retries=0).messages.create(
            model="scripted", max_tokens=5, messages=conversation("x", 0))
    assert "no attempt key" in error.value.message and "claw-TOKEN" in error.value.message
    # A well-signed key of an attempt that does not exist is refused too.
    missing = httpx.post(gateway.url + "/v1/chat/completions", json={"model": "m", "messages": []},
                         headers={"authorization": f"Bearer claw-{gateway.gateway.token(999)}"})
    assert missing.status_code == 401 and calls(project, gateway, expect=0) == []


def test_upstream_down_is_a_502_with_the_reason(project, monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    configure(project, f"""
        [gateway]
        retries = 1
        retry_backoff = 0.01
        [gateway.upstreams.gone]
        base_url = "http://127.0.0.1:{port}/v1"
        apis = ["messages"]
        """)
    attempt = new_attempt(project)
    with GatewayServer(project.root) as gateway:
        with pytest.raises(anthropic.APIStatusError) as error:
            anthropic_for(gateway, attempt.id).messages.create(model="m", max_tokens=5, messages=conversation("x", 0))
        [call] = calls(project, gateway)
    assert error.value.status_code == 502
    assert f"upstream 'gone' at http://127.0.0.1:{port}/v1/messages is unreachable" in error.value.message
    assert "(tried 2 time(s))" in error.value.message and "gateway.upstreams.gone.base_url" in error.value.message
    assert error.value.body["type"] == "error" and call.status == "unreachable"


def test_a_slow_upstream_times_out_with_a_504(setup, scripted):
    project, attempt = setup
    configure(project, "[gateway]\nread_timeout = 0.3\nretries = 0\n")
    with GatewayServer(project.root) as gateway:
        with pytest.raises(openai.APIStatusError) as error:
            openai_for(gateway, attempt.id).chat.completions.create(model="scripted", messages=conversation("be slow", 0))
        [call] = calls(project, gateway)
    assert error.value.status_code == 504 and "did not answer within 0.3 s (gateway.read_timeout)" in error.value.message
    assert call.status == "timeout"


def test_an_upstream_error_passes_through_in_its_own_format(setup, gateway):
    project, attempt = setup
    with pytest.raises(anthropic.AuthenticationError) as error:
        anthropic_for(gateway, attempt.id).messages.create(model="scripted", max_tokens=5,
                                                           messages=conversation("bad key", 0))
    assert error.value.body == {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
    assert calls(project, gateway)[0].error == "invalid x-api-key"


def test_a_model_no_upstream_serves_is_a_404(project, scripted):
    configure(project, f"""
        [gateway.upstreams.one]
        base_url = "{scripted.url}/v1"
        models = ["alpha-*"]
        [gateway.upstreams.two]
        base_url = "{scripted.url}/v1"
        models = ["beta-*"]
        """)
    attempt = new_attempt(project)
    with GatewayServer(project.root) as gateway:
        client = openai_for(gateway, attempt.id)
        ok = client.chat.completions.create(model="beta-1", messages=conversation("Add a slugify helper", 2))
        with pytest.raises(openai.NotFoundError) as error:
            client.chat.completions.create(model="gamma", messages=conversation("Add a slugify helper", 0))
        rows = calls(project, gateway, expect=3)
    assert ok.choices[0].message.content == "DONE: Added slugify."
    assert "no upstream serves model 'gamma' on the chat API (upstreams for it: one, two)" in error.value.message
    assert [(r.upstream, r.status) for r in rows] == [("two", "ok"), ("", "error")]


# -- budgets -------------------------------------------------------------------------------

def test_a_zero_budget_refuses_at_once_and_says_how_to_raise_it(setup, scripted):
    project, attempt = setup
    configure(project, "[gateway.budget]\nattempt_usd = 0\n")
    before = len(scripted.requests)
    with GatewayServer(project.root) as gateway:
        for _ in range(2):
            with pytest.raises(openai.APIStatusError) as error:
                openai_for(gateway, attempt.id).chat.completions.create(
                    model="scripted", messages=conversation("Add a slugify helper", 0))
        with pytest.raises(anthropic.APIStatusError) as anthropic_error:
            anthropic_for(gateway, attempt.id).messages.create(model="scripted", max_tokens=5,
                                                               messages=conversation("Add a slugify helper", 0))
        rows = calls(project, gateway, expect=2)
    assert error.value.status_code == 402 and error.value.body["type"] == "insufficient_quota"
    assert "gateway.budget.attempt_usd is 0, so no call is allowed" in error.value.message
    assert "Raise gateway.budget.attempt_usd in .claw/config.toml" in error.value.message
    assert anthropic_error.value.status_code == 402 and anthropic_error.value.body["error"]["type"] == "billing_error"
    assert len(scripted.requests) == before, "a refused call reached the upstream"
    assert [r.status for r in rows] == ["refused"] * 3
    over = [e for e in project.store.events() if e["kind"] == "budget.refused"]
    assert len(over) == 1 and over[0]["attempt_id"] == attempt.id
    assert over[0]["data"]["budget"] == "gateway.budget.attempt_usd"


def test_token_budgets_per_attempt_and_task_and_raising_one_applies_live(setup):
    project, attempt = setup
    configure(project, "[gateway.budget]\nattempt_tokens = 5\ntask_tokens = 1000000\n")
    with GatewayServer(project.root) as gateway:
        client = openai_for(gateway, attempt.id)
        client.chat.completions.create(model="scripted", messages=conversation("Add a slugify helper", 0))
        calls(project, gateway)  # budgets count recorded calls
        with pytest.raises(openai.APIStatusError) as error:
            client.chat.completions.create(model="scripted", messages=conversation("Add a slugify helper", 1))
        spent = project.store.llm_spend(attempt_id=attempt.id)[0]
        assert f"this attempt has used {spent:,} tokens of its 5 tokens (gateway.budget.attempt_tokens)" \
            in error.value.message
        project.config_path.write_text(project.config_path.read_text().replace("attempt_tokens = 5", "attempt_tokens = 500"))
        deadline, reply = time.monotonic() + 5, None
        while reply is None and time.monotonic() < deadline:
            try:
                reply = client.chat.completions.create(model="scripted", messages=conversation("Add a slugify helper", 1))
            except openai.APIStatusError:
                time.sleep(0.1)
        assert reply is not None, "the raised budget was not picked up"


def test_the_day_budget_counts_the_whole_fleet(setup):
    project, attempt = setup
    configure(project, "[gateway.budget]\nday_usd = 0.00001\n")
    other = new_attempt(project, "Another task")
    with GatewayServer(project.root) as gateway:
        openai_for(gateway, attempt.id).chat.completions.create(model="scripted", messages=conversation("Add a slugify helper", 0))
        calls(project, gateway)  # budgets count recorded calls
        with pytest.raises(openai.APIStatusError) as error:
            openai_for(gateway, other.id).chat.completions.create(model="scripted", messages=conversation("Add a slugify helper", 0))
    assert error.value.status_code == 402
    assert "over budget: the fleet has used $0.000" in error.value.message
    assert "of its $0.000010 today (gateway.budget.day_usd)" in error.value.message


# -- transcripts ---------------------------------------------------------------------------

def test_transcripts_are_redacted(setup, gateway):
    project, attempt = setup
    secret_prompt = ("Add a slugify helper. Our key is sk-live-abcdefghijklmnopqrstuvwx and "
                     "export GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789")
    openai_for(gateway, attempt.id).chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": secret_prompt}], extra_body={"api_key": "hunter2hunter2"})
    calls(project, gateway, expect=5)
    text = (project.attempt_dir(attempt.id) / "transcript.jsonl").read_text()
    assert "sk-live-" not in text and "ghp_" not in text and "hunter2" not in text and REAL_KEY not in text
    [entry] = read_transcript(project.attempt_dir(attempt.id) / "transcript.jsonl")
    assert entry["request"]["messages"][0]["content"].startswith("Add a slugify helper. Our key is [REDACTED]")
    assert "GITHUB_TOKEN=[REDACTED]" in entry["request"]["messages"][0]["content"]
    assert entry["request"]["api_key"] == "[REDACTED]"
    assert entry["reply"]["text"].startswith("THOUGHT:") and entry["status"] == "ok"
    assert redact({"max_tokens": 5, "authorization": "Bearer abc", "note": "x"}, ["abc"]) == \
        {"max_tokens": 5, "authorization": "[REDACTED]", "note": "x"}


def test_a_transcript_becomes_a_script_that_replays_the_same_replies(setup, gateway, tmp_path):
    project, attempt = setup
    openai_client, anthropic_client = openai_for(gateway, attempt.id), anthropic_for(gateway, attempt.id)
    recorded = [openai_client.chat.completions.create(
        model="scripted", messages=conversation("Add a slugify helper", 0)).choices[0].message.content]
    with anthropic_client.messages.stream(model="scripted", max_tokens=50,
                                          messages=conversation("Add a slugify helper", 1)) as stream:
        recorded.append(stream.get_final_text())
    chunks = openai_client.chat.completions.create(model="scripted", stream=True,
                                                   messages=conversation("Add a slugify helper", 2))
    recorded.append("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
    other = openai_client.chat.completions.create(model="scripted", messages=conversation("Add a slugify helper now", 2))
    recorded_other = other.choices[0].message.content
    calls(project, gateway)
    path = project.attempt_dir(attempt.id) / "transcript.jsonl"
    deadline = time.monotonic() + 10
    while len(read_transcript(path)) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)  # the transcript line is written just after the call's record
    toml_text = script_from_transcript(read_transcript(path))
    result = claw(project.root, "gateway", "script", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == toml_text
    script_file = tmp_path / "replay.toml"
    script_file.write_text(toml_text)
    with ScriptedServer(Script.load(script_file)) as replay:
        client = openai.OpenAI(base_url=replay.openai_base_url, api_key="x", max_retries=0)
        replayed = [client.chat.completions.create(model="m", messages=conversation("Add a slugify helper", turn))
                    .choices[0].message.content for turn in range(3)]
        replayed_other = client.chat.completions.create(
            model="m", messages=conversation("Add a slugify helper now", 2)).choices[0].message.content
    assert replayed == recorded
    assert replayed_other == recorded_other


# -- stats -----------------------------------------------------------------------------------

def test_claw_stats_reports_tokens_cost_outcomes_and_utilisation(setup, gateway):
    project, attempt = setup
    openai_for(gateway, attempt.id).chat.completions.create(model="scripted", messages=conversation("Add a slugify helper", 0))
    calls(project, gateway)
    result = claw(project.root, "stats", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    [call] = project.store.llm_calls()
    assert data["attempts"] == {"total": 1, "by_outcome": {"running": 1}}
    assert data["tokens"]["total"] == call.tokens and data["cost"]["total"] == pytest.approx(call.cost)
    assert data["per_agent"]["builtin"]["tokens"] == call.tokens
    assert data["per_task"][str(attempt.task_id)]["title"] == "Add a slugify helper"
    assert 0 < data["slots"]["utilisation"] <= 1 / 3 + 1e-9  # one running attempt of 3 slots
    human = claw(project.root, "stats")
    assert "1 attempts" in human.stdout and "slot utilisation" in human.stdout and "cost: $" in human.stdout


def test_claw_run_meters_the_builtin_agent_through_the_gateway(repo):
    """`[gateway] enabled`: claw run starts it, points the built-in agent at it, meters each call."""
    script = Script.from_rules([{"match": "Create notes", "steps": [
        {"command": "printf 'metered\\n' > notes.txt"}, {"done": "created notes.txt"}]}])
    with ScriptedServer(script) as upstream:
        write_config(repo, f"""
            [review]
            auto_approve = ["normal"]
            [agents.builtin]
            kind = "builtin"
            provider = "openai"
            model = "scripted"
            base_url = "http://127.0.0.1:9/v1"   # never used: the gateway stands in
            [gateway]
            enabled = true
            default = {{ chat = "scripted" }}
            [gateway.upstreams.scripted]
            base_url = "{upstream.openai_base_url}"
            apis = ["chat"]
            """)
        claw(repo, "add", "Create notes")
        result = claw(repo, "run")
        assert result.returncode == 0, result.stderr
        assert len(upstream.requests) == 2
    assert "gateway at http://127.0.0.1:" in result.stdout
    tasks = json.loads(claw(repo, "status", "--all", "--json").stdout)
    assert tasks[0]["state"] == "merged" and (repo / "notes.txt").read_text() == "metered\n"
    calls = Project(repo).store.llm_calls(attempt_id=tasks[0]["latest_attempt"]["id"])
    assert len(calls) == 2 and all(c.status == "ok" and c.input_tokens > 0 for c in calls)


# An agent that goes on after the gateway refused it: one paid call, a file written, a refused
# call, then "work" that would take a minute.
STUBBORN_AGENT = """\
import json, os, time, urllib.error, urllib.request

def ask():
    request = urllib.request.Request(
        os.environ["CLAW_GATEWAY_URL"] + "/v1/chat/completions",
        data=json.dumps({"model": "scripted", "messages": [{"role": "user", "content": "Create notes"}]}).encode(),
        headers={"authorization": "Bearer " + os.environ["CLAW_GATEWAY_KEY"], "content-type": "application/json"})
    try:
        return urllib.request.urlopen(request, timeout=10).status
    except urllib.error.HTTPError as error:
        return error.code

print("first call:", ask(), flush=True)
open("half-done.txt", "w").write("work in progress\\n")
time.sleep(0.5)   # the first call is recorded just after its reply
print("second call:", ask(), flush=True)
time.sleep(60)
"""


def test_an_attempt_over_budget_is_stopped_its_work_kept_and_the_task_failed_with_the_fix(repo):
    (repo.parent / "stubborn.py").write_text(STUBBORN_AGENT)
    script = Script.from_rules([{"match": "Create notes", "steps": [{"text": "noted"}]}])
    with ScriptedServer(script) as upstream:
        write_config(repo, f"""
            [fleet]
            default_agent = "stubborn"
            [agents.stubborn]
            kind = "command"
            command = ["python3", "{repo.parent / 'stubborn.py'}"]
            [gateway]
            enabled = true
            [gateway.upstreams.scripted]
            base_url = "{upstream.openai_base_url}"
            [gateway.budget]
            attempt_tokens = 1
            """)
        claw(repo, "add", "Take notes")
        started = time.monotonic()
        result = claw(repo, "run")
        took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert took < 30, "the attempt was not stopped: it ran its minute out"
    print(f"claw run took {took:.1f} s")
    task = json.loads(claw(repo, "status", "--all", "--json").stdout)[0]
    attempt = task["latest_attempt"]
    assert task["state"] == "failed" and attempt["state"] == "over_budget"
    assert "this attempt has used" in task["reason"] and "gateway.budget.attempt_tokens" in task["reason"]
    assert "Raise gateway.budget.attempt_tokens" in task["reason"]
    assert attempt["cost_usd"] == 0 and attempt["metered_tokens"] > 1
    # What it wrote before it was stopped is committed on its branch.
    assert "work in progress" in git_show(repo, f"{attempt['branch']}:half-done.txt")
    kinds = [e["kind"] for e in Project(repo).store.events(task_id=task["id"])]
    assert "budget.refused" in kinds and "attempt.over_budget" in kinds
    assert "over_budget" in result.stdout
    table = claw(repo, "status", "--all").stdout
    assert "over budget" in table or "this attempt has used" in table


def git_show(repo, spec: str) -> str:
    from clawfleet import git
    return git.out("show", spec, cwd=repo)


def test_a_builtin_agent_refused_over_budget_ends_over_budget_not_failed(repo):
    script = Script.from_rules([{"match": "Create notes", "steps": [
        {"command": "printf 'draft\\n' > notes.txt && sleep 0.5"}, {"done": "created notes.txt"}]}])
    with ScriptedServer(script) as upstream:
        write_config(repo, f"""
            [agents.builtin]
            kind = "builtin"
            model = "scripted"
            [gateway]
            enabled = true
            [gateway.upstreams.scripted]
            base_url = "{upstream.openai_base_url}"
            [gateway.budget]
            attempt_tokens = 1
            """)
        claw(repo, "add", "Create notes")
        assert claw(repo, "run").returncode == 0
    task = json.loads(claw(repo, "status", "--all", "--json").stdout)[0]
    assert (task["state"], task["latest_attempt"]["state"]) == ("failed", "over_budget")
    assert "gateway.budget.attempt_tokens" in task["reason"]
    assert git_show(repo, f"{task['latest_attempt']['branch']}:notes.txt") == "draft"
