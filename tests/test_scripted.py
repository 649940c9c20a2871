"""The scripted model server, spoken to over real HTTP through the official openai and anthropic SDKs."""

from __future__ import annotations

import json
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


def test_a_client_opening_with_example_exchanges_is_matched_from_its_real_request(server):
    """Aider sends made-up exchanges first: the rule matches the later message, turns count from it."""
    examples = [{"role": "user", "content": "Change the greeting"}, {"role": "assistant", "content": "Ok."},
                {"role": "user", "content": "Refactor it"}, {"role": "assistant", "content": "Done."}]
    client = openai_client(server)
    texts = [client.chat.completions.create(
        model="scripted", messages=[*examples, *conversation("Add a slugify helper", n)]).choices[0].message.content
        for n in range(3)]
    assert texts[0].startswith("THOUGHT:") and texts[1] == "free text reply" and texts[2].startswith("DONE:")


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


def test_match_title_and_match_task_see_only_the_task_of_a_real_attempt_prompt(tmp_path):
    """`match` searches the whole prompt, where AGENTS.md and memory notes name other tasks: a rule
    for "Add greet" also answered "Write docs for greet". match_title / match_task do not."""
    from clawfleet.models import Note, Task
    from clawfleet.prompt import render_prompt

    (tmp_path / "AGENTS.md").write_text("Every change like 'Add greet' needs docs.\n")
    note = Note(id=1, body="Add greet landed in greet.py", tags=[], source="agent", task_id=1,
                attempt_id=1, created_at=0.0)

    def prompt(title: str, body: str = "") -> str:
        task = Task(id=2, title=title, body=body, kind="feature")
        return render_prompt(task, project_root=tmp_path, branch="claw/2", checks=["pytest -q"], notes=[note])

    script = Script.from_rules([
        {"name": "greet", "match_title": "^Add greet", "steps": [{"text": "adding greet"}]},
        {"name": "body", "match_task": "in French", "steps": [{"text": "en français"}]},
        {"steps": [{"text": "docs"}]},
    ])
    assert "Add greet" in prompt("Write docs for greet")  # what `match` would have found
    assert script.step_for(prompt("Write docs for greet"), 0).value == "docs"
    assert script.step_for(prompt("Add greet", "a function"), 0).value == "adding greet"
    assert script.step_for(prompt("Say hello", "in French, please"), 0).value == "en français"
    assert script.step_for("no task heading at all, in French", 0).value == "docs"


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
    assert time.monotonic() - started < 2.0   # no fixed sleep: it returns once it listens
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


# -- tool calls and the Responses API --------------------------------------------------------

TOOLS = Script.from_rules([{"name": "tools", "match": "Add a slugify", "steps": [
    {"tool": "Bash", "input": {"command": "echo 'print(1)' > slug.py"}},
    {"tool": "Write", "input": {"file_path": "a.txt", "content": "x\n"}},
    {"done": "Added slugify."},
]}])


def test_tool_steps_are_anthropic_tool_use_blocks_and_tool_results_count_as_turns():
    with ScriptedServer(TOOLS) as server:
        client = anthropic_client(server)
        first = client.messages.create(model="m", max_tokens=100,
                                       messages=[{"role": "user", "content": "Add a slugify helper"}])
        block = first.content[0]
        assert first.stop_reason == "tool_use"
        assert (block.type, block.name, block.input) == ("tool_use", "Bash", {"command": "echo 'print(1)' > slug.py"})
        history = [{"role": "user", "content": "Add a slugify helper"},
                   {"role": "assistant", "content": [block.model_dump()]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "ok"}]}]
        with client.messages.stream(model="m", max_tokens=100, messages=history) as stream:
            second = stream.get_final_message()
        assert second.stop_reason == "tool_use"
        assert (second.content[0].name, second.content[0].input) == ("Write", {"file_path": "a.txt", "content": "x\n"})
        history += [{"role": "assistant", "content": [second.content[0].model_dump()]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": second.content[0].id,
                                                  "content": "written"}]}]
        third = client.messages.create(model="m", max_tokens=100, messages=history)
    assert third.content[0].text == "DONE: Added slugify." and third.stop_reason == "end_turn"


def test_tool_steps_are_openai_chat_tool_calls_streamed_or_not():
    with ScriptedServer(TOOLS) as server:
        client = openai_client(server)
        reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Add a slugify x"}])
        choice = reply.choices[0]
        call = choice.message.tool_calls[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        assert call.function.name == "Bash"
        assert json.loads(call.function.arguments) == {"command": "echo 'print(1)' > slug.py"}
        history = [{"role": "user", "content": "Add a slugify x"}, choice.message.model_dump(exclude_none=True),
                   {"role": "tool", "tool_call_id": call.id, "content": "ok"}]
        chunks = list(client.chat.completions.create(model="m", messages=history, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].tool_calls[0].function.name == "Write" and deltas[0].tool_calls[0].id
    arguments = "".join(d.tool_calls[0].function.arguments for d in deltas if d.tool_calls)
    assert json.loads(arguments) == {"file_path": "a.txt", "content": "x\n"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def responses_input(*turns: dict) -> list[dict]:
    """Codex's shape: instructions as a developer message, context and prompt as two user messages."""
    return [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "be a coder"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context/>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Add a slugify helper"}]},
            *turns]


def test_responses_api_function_calls_and_text_through_the_sdk():
    with ScriptedServer(TOOLS) as server:
        client = openai_client(server)
        first = client.responses.create(model="gpt-5-codex", input=responses_input())
        call = first.output[0]
        assert first.status == "completed" and call.type == "function_call"
        assert call.name == "Bash" and json.loads(call.arguments) == {"command": "echo 'print(1)' > slug.py"}
        assert first.usage.input_tokens > 1 and first.usage.output_tokens > 1
        done_call = {"type": "function_call", "call_id": call.call_id, "name": "Bash", "arguments": call.arguments}
        result = {"type": "function_call_output", "call_id": call.call_id, "output": "ok"}
        with client.responses.stream(model="m", input=responses_input(done_call, result)) as stream:
            second = stream.get_final_response()
        assert second.output[0].name == "Write"
        assert json.loads(second.output[0].arguments) == {"file_path": "a.txt", "content": "x\n"}
        third = client.responses.create(model="m", input=responses_input(
            done_call, result, {**done_call, "name": "Write"}, {**result, "output": "written"}))
    assert third.output_text == "DONE: Added slugify."


def test_responses_stream_is_the_full_event_sequence_ending_in_completed():
    with ScriptedServer(THREE_STEPS) as server:
        response = httpx.post(server.url + "/v1/responses", json={
            "model": "m", "stream": True, "input": "Add a slugify helper"})
        with openai_client(server).responses.stream(model="m", input="Add a slugify helper") as stream:
            text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
    events = [line.removeprefix("event: ") for line in response.text.splitlines() if line.startswith("event: ")]
    deduplicated = [e for i, e in enumerate(events) if i == 0 or e != events[i - 1]]
    assert deduplicated == ["response.created", "response.in_progress", "response.output_item.added",
                            "response.content_part.added", "response.output_text.delta",
                            "response.output_text.done", "response.content_part.done",
                            "response.output_item.done", "response.completed"]
    data = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert [d["sequence_number"] for d in data] == list(range(len(data)))
    assert data[-1]["response"]["usage"]["output_tokens"] > 0
    assert "```bash\ncat > slug.py" in text


def test_responses_errors_and_unknown_conversations_are_openai_errors():
    script = Script.from_rules([{"match": "busy", "steps": [{"error": 503, "message": "try later"}]},
                                {"match": "hello", "steps": [{"text": "hi"}]}])
    with ScriptedServer(script) as server:
        with pytest.raises(openai.InternalServerError) as error:
            openai_client(server).responses.create(model="m", input="busy?")
        with pytest.raises(openai.BadRequestError) as unknown:
            openai_client(server).responses.create(model="m", input="something else")
        assert httpx.post(server.url + "/v1/responses", json={"input": 5}).status_code == 400
        assert httpx.post(server.url + "/responses", json={"input": "hello"}).json()["output"][0]["content"][0][
            "text"] == "hi"
    assert error.value.status_code == 503 and error.value.body["message"] == "try later"
    assert "no rule matches" in unknown.value.message


def test_only_the_opening_user_messages_of_a_responses_conversation_are_matched():
    script = Script.from_rules([{"match": "checks failed", "steps": [{"text": "fixing"}]},
                                {"steps": [{"text": "a"}, {"text": "b"}]}])
    with ScriptedServer(script) as server:
        later = [{"role": "user", "content": "Add it"}, {"role": "assistant", "content": "a"},
                 {"role": "user", "content": "the checks failed"}]
        reply = openai_client(server).responses.create(model="m", input=later)
    assert reply.output_text == "b"


@pytest.mark.parametrize("raw, problem", [
    ({"tool": "Bash", "input": "ls"}, "input must be a table"),
    ({"text": "hi", "input": {"a": 1}}, "only for tool steps"),
    ({"tool": 5}, "tool must be a string"),
])
def test_invalid_tool_steps(raw, problem):
    with pytest.raises(ClawError) as error:
        Script.from_rules([{"steps": [raw]}])
    assert problem in error.value.message


def test_gemini_api_function_calls_text_stream_and_errors():
    script = Script.from_rules([{"match": "Add a slugify", "steps": [
        {"tool": "run_shell_command", "input": {"command": "ls"}},
        {"text": "Added slugify and its test, all green."},
    ]}, {"match": "busy", "steps": [{"error": 429, "message": "quota"}]}])
    opening = [{"role": "user", "parts": [{"text": "<session_context/>"}, {"text": "Add a slugify helper"}]}]
    with ScriptedServer(script) as server:
        url = server.url + "/v1beta/models/gemini-x"
        first = httpx.post(url + ":generateContent", json={"contents": opening}).json()
        part = first["candidates"][0]["content"]["parts"][0]
        assert part == {"functionCall": {"name": "run_shell_command", "args": {"command": "ls"}}}
        assert first["usageMetadata"]["promptTokenCount"] > 1 and first["modelVersion"] == "gemini-x"
        history = opening + [{"role": "model", "parts": [part]},
                             {"role": "user", "parts": [{"functionResponse": {"name": "run_shell_command",
                                                                              "response": {"output": "a.py"}}}]}]
        streamed = httpx.post(url + ":streamGenerateContent?alt=sse", json={"contents": history})
        chunks = [json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: ")]
        text = "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks)
        assert text == "Added slugify and its test, all green."
        assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
        assert "finishReason" not in chunks[0]["candidates"][0]
        busy = httpx.post(url + ":generateContent", json={"contents": [{"role": "user", "parts": [{"text": "busy"}]}]})
        assert busy.status_code == 429 and busy.json()["error"] == {"code": 429, "message": "quota",
                                                                     "status": "RESOURCE_EXHAUSTED"}
        assert httpx.post(url + ":countTokens", json={"contents": opening}).json()["totalTokens"] > 1
        assert httpx.post(url + ":embedContent", json={}).status_code == 404
        assert httpx.post(url + ":generateContent", json={"contents": "x"}).status_code == 400
