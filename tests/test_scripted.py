"""The scripted model server, spoken to over real HTTP through the official openai and anthropic SDKs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from clawfleet.errors import ClawError
from clawfleet.llm.scripted import Script, ScriptedServer

THREE_STEPS = Script.from_rules([{"name": "slugify", "match": "Add a slugify", "steps": [
    {"command": "cat > slug.py <<'EOF'\nprint('slug')\nEOF"},
    {"text": "free text reply"},
    {"done": "Added slugify and its test."},
]}])


def conversation(first: str, turns: int) -> list[dict]:
    """A user message, then `turns` assistant/user exchanges."""
    messages = [{"role": "user", "content": first}]
    for n in range(turns):
        messages += [{"role": "assistant", "content": f"reply {n}"}, {"role": "user", "content": f"output {n}"}]
    return messages


def openai_client(server: ScriptedServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.openai_base_url, api_key="none", max_retries=0, timeout=10)


def anthropic_client(server: ScriptedServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="none", max_retries=0, timeout=10)


@pytest.fixture(scope="module")
def server():
    with ScriptedServer(THREE_STEPS) as running:
        yield running


def test_openai_step_follows_the_assistant_message_count(server):
    client = openai_client(server)
    replies = [client.chat.completions.create(
        model="scripted", messages=[{"role": "system", "content": "be brief"}, *conversation("Add a slugify helper", n)])
        for n in range(3)]
    texts = [reply.choices[0].message.content for reply in replies]
    assert texts[0].startswith("THOUGHT:")
    assert texts[0].count("```bash\n") == 1
    assert "```bash\ncat > slug.py <<'EOF'\nprint('slug')\nEOF\n```" in texts[0]
    assert texts[1] == "free text reply"
    assert texts[2] == "DONE: Added slugify and its test."
    usage = replies[1].usage
    assert usage.prompt_tokens > 1 and usage.completion_tokens == len("free text reply") // 4
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_openai_stream_with_usage_and_content_parts(server):
    stream = openai_client(server).chat.completions.create(
        model="scripted", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": [{"type": "text", "text": "Add a slugify helper"}]},
                  {"role": "assistant", "content": "ok"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "free text reply"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_openai_stream_without_include_usage_ends_with_done(server):
    response = httpx.post(server.url + "/v1/chat/completions", json={
        "model": "m", "stream": True, "messages": conversation("Add a slugify helper", 2)})
    lines = [line for line in response.text.splitlines() if line]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)
    assert '"usage"' not in response.text
    assert "DONE: Added" in "".join(lines)


def test_anthropic_step_follows_the_assistant_message_count(server):
    client = anthropic_client(server)
    replies = [client.messages.create(model="scripted", max_tokens=100, system="be brief",
                                      messages=conversation("Add a slugify helper", n)) for n in range(3)]
    texts = [reply.content[0].text for reply in replies]
    assert "```bash\ncat > slug.py" in texts[0]
    assert texts[1:] == ["free text reply", "DONE: Added slugify and its test."]
    assert replies[0].stop_reason == "end_turn"
    assert replies[0].usage.input_tokens > 1 and replies[0].usage.output_tokens > 1


def test_anthropic_stream_with_blocks_and_a_system_list(server):
    client = anthropic_client(server)
    with client.messages.stream(
            model="scripted", max_tokens=100, system=[{"type": "text", "text": "be brief"}],
            messages=[{"role": "user", "content": [{"type": "text", "text": "Please: Add a slugify helper"}]},
                      {"role": "assistant", "content": [{"type": "text", "text": "looking"}]},
                      {"role": "user", "content": "output"}]) as stream:
        text = stream.get_final_text()
        final = stream.get_final_message()
    assert text == "free text reply"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == len("free text reply") // 4 and final.usage.input_tokens > 1


def test_anthropic_stream_events_in_order(server):
    response = httpx.post(server.url + "/v1/messages", json={
        "model": "m", "max_tokens": 10, "stream": True, "messages": conversation("Add a slugify helper", 1)})
    events = [line.removeprefix("event: ") for line in response.text.splitlines() if line.startswith("event: ")]
    deduplicated = [e for i, e in enumerate(events) if i == 0 or e != events[i - 1]]
    assert deduplicated == ["message_start", "content_block_start", "content_block_delta",
                            "content_block_stop", "message_delta", "message_stop"]


def test_paths_without_v1_and_models_list(server):
    body = {"model": "m", "max_tokens": 10, "messages": conversation("Add a slugify helper", 2)}
    assert httpx.post(server.url + "/messages", json=body).json()["content"][0]["text"].startswith("DONE:")
    assert httpx.post(server.url + "/chat/completions", json=body).json()["choices"][0]["message"][
        "content"].startswith("DONE:")
    assert [m.id for m in openai_client(server).models.list()] == ["scripted"]
    assert [m.id for m in anthropic_client(server).models.list()] == ["scripted"]
    assert httpx.get(server.url + "/models").status_code == 200


def test_exhausted_steps_answer_400_with_a_clear_message(server):
    with pytest.raises(openai.BadRequestError) as error:
        openai_client(server).chat.completions.create(model="m", messages=conversation("Add a slugify helper", 3))
    assert error.value.status_code == 400
    assert "scripted model: rule 'slugify' has no step 3 (it has 3)" in error.value.message
    with pytest.raises(anthropic.BadRequestError) as error:
        anthropic_client(server).messages.create(model="m", max_tokens=10,
                                                 messages=conversation("Add a slugify helper", 4))
    assert "rule 'slugify' has no step 4 (it has 3)" in error.value.message


def test_no_matching_rule_answers_400_in_each_api_format(server):
    body = {"model": "m", "max_tokens": 10, "messages": conversation("Write the docs", 0)}
    openai_reply = httpx.post(server.url + "/v1/chat/completions", json=body)
    anthropic_reply = httpx.post(server.url + "/v1/messages", json=body)
    assert openai_reply.status_code == anthropic_reply.status_code == 400
    message = openai_reply.json()["error"]["message"]
    assert message.startswith("scripted model: no rule matches this conversation; first user message starts:")
    assert "Write the docs" in message
    assert anthropic_reply.json()["type"] == "error"
    assert anthropic_reply.json()["error"]["message"] == message


def test_a_body_that_is_not_a_conversation_is_a_400(server):
    assert httpx.post(server.url + "/v1/chat/completions", content=b"not json").status_code == 400
    assert httpx.post(server.url + "/v1/chat/completions", json=[1, 2]).status_code == 400
    assert httpx.post(server.url + "/v1/messages", json={"messages": "hi"}).status_code == 400


def test_match_not_match_and_rule_order():
    script = Script.from_rules([
        {"name": "fix", "match": "Add slugify.*checks failed", "steps": [{"text": "fixing"}]},
        {"name": "feature", "match": "Add slugify", "not_match": "skip me", "steps": [{"text": "adding"}]},
        {"name": "feature-again", "match": "Add slugify", "steps": [{"text": "shadowed"}]},
        {"steps": [{"text": "anything else"}]},
    ])
    prompts = {"Add slugify.\n\nThe checks failed: ...": "fixing",   # re.S: `.` crosses lines
               "Add slugify please": "adding",
               "Add slugify, skip me": "shadowed",
               "Something else": "anything else",
               "The checks failed. Add slugify": "adding"}
    with ScriptedServer(script) as server:
        client = openai_client(server)
        for prompt, expected in prompts.items():
            reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": prompt}])
            assert reply.choices[0].message.content == expected, prompt
        # Only the FIRST user message decides: a later "checks failed" does not switch rules.
        later = [{"role": "user", "content": "Add slugify please"}, {"role": "user", "content": "checks failed"}]
        assert client.chat.completions.create(model="m", messages=later).choices[0].message.content == "adding"


def test_error_steps_answer_that_status_in_each_api_format():
    script = Script.from_rules([{"steps": [{"error": 500, "message": "overloaded"}]},
                                {"steps": [{"done": "never"}]}])
    with ScriptedServer(script) as server:
        with pytest.raises(openai.InternalServerError) as openai_error:
            openai_client(server).chat.completions.create(model="m", messages=conversation("hi", 0))
        with pytest.raises(anthropic.InternalServerError) as anthropic_error:
            anthropic_client(server).messages.create(model="m", max_tokens=10, messages=conversation("hi", 0))
    assert openai_error.value.status_code == 500 and anthropic_error.value.status_code == 500
    assert openai_error.value.body["message"] == "overloaded"
    assert anthropic_error.value.body == {"type": "error", "error": {"type": "api_error", "message": "overloaded"}}


def test_error_step_as_rate_limit_and_auth():
    script = Script.from_rules([{"match": "limit", "steps": [{"error": 429, "message": "slow down"}]},
                                {"steps": [{"error": 401, "message": "invalid x-api-key"}]}])
    with ScriptedServer(script) as server:
        with pytest.raises(anthropic.RateLimitError):
            anthropic_client(server).messages.create(model="m", max_tokens=10, messages=conversation("limit", 0))
        with pytest.raises(openai.AuthenticationError) as error:
            openai_client(server).chat.completions.create(model="m", messages=conversation("hi", 0))
    assert error.value.body["type"] == "authentication_error"


def test_delay_waits_before_answering():
    script = Script.from_rules([{"steps": [{"text": "slow", "delay": 0.3}, {"text": "fast"}]}])
    with ScriptedServer(script) as server:
        started = time.monotonic()
        openai_client(server).chat.completions.create(model="m", messages=conversation("x", 0))
        slow = time.monotonic() - started
        started = time.monotonic()
        openai_client(server).chat.completions.create(model="m", messages=conversation("x", 1))
        fast = time.monotonic() - started
    assert slow >= 0.3 and fast < 0.3


def test_requests_are_recorded_in_order():
    script = Script.from_rules([{"steps": [{"text": "a"}, {"text": "b"}]}])
    with ScriptedServer(script) as server:
        openai_client(server).chat.completions.create(model="first", messages=conversation("x", 0))
        anthropic_client(server).messages.create(model="second", max_tokens=5, messages=conversation("x", 1))
        recorded = server.requests
    assert [r["path"] for r in recorded] == ["/v1/chat/completions", "/v1/messages"]
    assert [r["body"]["model"] for r in recorded] == ["first", "second"]
    assert recorded[1]["body"]["messages"][1] == {"role": "assistant", "content": "reply 0"}


def test_requests_from_many_threads_are_all_recorded():
    script = Script.from_rules([{"steps": [{"text": "ok"}]}])
    with ScriptedServer(script) as server:
        def call(n: int) -> None:
            httpx.post(server.url + "/v1/chat/completions", json={"model": str(n), "messages": conversation("x", 0)})
        threads = [threading.Thread(target=call, args=(n,)) for n in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(int(r["body"]["model"]) for r in server.requests) == list(range(20))


def test_start_is_fast_and_stop_releases_the_port_and_thread():
    threads_before = threading.active_count()
    started = time.monotonic()
    server = ScriptedServer(THREE_STEPS, port=0).start()
    assert time.monotonic() - started < 0.5
    port = server.port
    assert port > 0 and server.url == f"http://127.0.0.1:{port}"
    assert server.openai_base_url == server.url + "/v1"
    assert httpx.get(server.url + "/v1/models").status_code == 200
    server.stop()
    assert threading.active_count() == threads_before
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models")
    with ScriptedServer(THREE_STEPS, port=port) as again:  # the same port is free again
        assert again.port == port


def test_port_in_use_is_a_claw_error(server):
    with pytest.raises(ClawError) as error:
        ScriptedServer(THREE_STEPS, port=server.port).start()
    assert f"port {server.port}" in error.value.message and "already in use" in error.value.message
    assert "0" in error.value.hint


def test_wait_returns_when_stopped_from_another_thread():
    server = ScriptedServer(THREE_STEPS).start()
    threading.Timer(0.2, server.stop).start()
    started = time.monotonic()
    server.wait()
    assert time.monotonic() - started < 5


def test_load_and_parse(tmp_path: Path):
    path = tmp_path / "script.toml"
    path.write_text('[[rule]]\nname = "one"\nmatch = "Add"\nsteps = [{ command = "ls" }, { done = "ok", delay = 1 }]\n'
                    '[[rule]]\n[[rule.steps]]\nerror = 503\nmessage = "busy"\n')
    script = Script.load(path)
    assert [rule.name for rule in script.rules] == ["one", "rule-1"]
    assert [step.kind for step in script.rules[0].steps] == ["command", "done"]
    assert script.rules[0].steps[1].delay == 1.0
    assert Script.parse(path.read_text()) == script
    from importlib import resources
    demo = Script.parse((resources.files("clawfleet") / "demo" / "script.toml").read_text())
    assert len(demo.rules) >= 2


@pytest.mark.parametrize("text, problem", [
    ('[[rule]\nsteps = []', "TOML"),
    ('[[rule]]\nname = "r"\nsteps = [{ command = "ls", colour = "red" }]', "colour"),
    ('[[rule]]\nname = "r"\nsteps = [{ command = "ls", done = "x" }]', "exactly one"),
    ('[[rule]]\nname = "r"\nsteps = [{ delay = 1 }]', "exactly one"),
    ('[[rule]]\nname = "r"\nmatch = "Add ("\nsteps = [{ done = "x" }]', "regex"),
    ('[[rule]]\nname = "r"\nmatch = 5\nsteps = [{ done = "x" }]', "regex"),
    ('[[rule]]\nname = "r"\nsteps = []', "steps"),
    ('[[rule]]\nname = "r"', "steps"),
    ('title = "no rules"', "rule"),
    ('[[rule]]\nname = "r"\nwhen = "x"\nsteps = [{ done = "x" }]', "when"),
    ('[[rule]]\nname = "r"\nsteps = [{ error = "boom" }]', "error"),
    ('[[rule]]\nname = "r"\nsteps = [{ error = 200 }]', "error"),
    ('[[rule]]\nname = "r"\nsteps = [{ done = "x", delay = "soon" }]', "delay"),
    ('[[rule]]\nname = "r"\nsteps = [{ command = ["ls"] }]', "command"),
    ('[[rule]]\nname = "r"\nsteps = ["ls"]', "step 0"),
])
def test_invalid_script_files_are_claw_errors(tmp_path: Path, text: str, problem: str):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ClawError) as error:
        Script.load(path)
    assert str(path) in error.value.message
    assert problem in error.value.message
    assert error.value.hint


def test_missing_file_and_empty_rules_are_claw_errors(tmp_path: Path):
    with pytest.raises(ClawError, match="cannot read"):
        Script.load(tmp_path / "missing.toml")
    with pytest.raises(ClawError, match="rule"):
        Script.from_rules([])
    with pytest.raises(ClawError, match="rule 0"):
        Script.from_rules(["not a table"])
