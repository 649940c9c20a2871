"""Model clients through the official SDKs, against the scripted model server over real HTTP."""

from __future__ import annotations

import socket
import time

import pytest

from clawfleet.errors import ClawError
from clawfleet.llm.client import (AnthropicModel, ModelSettings, OpenAIChatModel, make_model,
                                  resolve_model_settings)
from clawfleet.llm.scripted import Script, ScriptedServer

SECRET = "sk-test-0123456789-secret"
MESSAGES = [{"role": "system", "content": "You are a careful engineer."},
            {"role": "user", "content": "Add a slugify helper"}]


def settings_for(server: ScriptedServer, provider: str, **overrides) -> ModelSettings:
    base_url = server.openai_base_url if provider == "openai" else server.url
    values = {"provider": provider, "model": "scripted", "base_url": base_url, "api_key": SECRET,
              "timeout": 10.0, "max_retries": 0, **overrides}
    return ModelSettings(**values)


def resolve(env: dict[str, str], **config) -> ModelSettings:
    values = {"provider": None, "model": None, "base_url": None, "api_key_env": None, **config}
    return resolve_model_settings(agent_name="builtin", env=env, **values)


def free_port() -> int:
    """A port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- completing against the scripted server ------------------------------------------------

@pytest.mark.parametrize("provider, model_class", [("openai", OpenAIChatModel), ("anthropic", AnthropicModel)])
def test_make_model_completes_with_token_counts(provider, model_class):
    script = Script.from_rules([{"match": "slugify", "steps": [{"command": "ls"}, {"done": "Added slugify."}]}])
    with ScriptedServer(script) as server:
        model = make_model(settings_for(server, provider))
        first = model.complete(MESSAGES)
        second = model.complete([*MESSAGES, {"role": "assistant", "content": first.text},
                                 {"role": "user", "content": "exit code 0"}])
        requests = server.requests
    assert isinstance(model, model_class) and model.settings.provider == provider
    assert "```bash\nls\n```" in first.text
    assert second.text == "DONE: Added slugify."
    assert first.input_tokens >= len("You are a careful engineer.Add a slugify helper") // 4
    assert second.input_tokens > first.input_tokens
    assert first.output_tokens == len(first.text) // 4
    assert [r["body"]["model"] for r in requests] == ["scripted", "scripted"]


def test_anthropic_model_sends_system_messages_in_the_system_field():
    with ScriptedServer(Script.from_rules([{"steps": [{"text": "ok"}]}])) as server:
        make_model(settings_for(server, "anthropic", max_output_tokens=123)).complete(MESSAGES)
        request = server.requests[0]
    assert request["path"] == "/v1/messages"
    assert request["body"]["system"] == "You are a careful engineer."
    assert request["body"]["messages"] == [{"role": "user", "content": "Add a slugify helper"}]
    assert request["body"]["max_tokens"] == 123


def test_openai_model_sends_the_conversation_as_is():
    with ScriptedServer(Script.from_rules([{"steps": [{"text": "ok"}]}])) as server:
        make_model(settings_for(server, "openai")).complete(MESSAGES)
        request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["messages"] == MESSAGES


def test_settings_repr_never_shows_the_key():
    settings = ModelSettings("openai", "gpt-x", "http://127.0.0.1:1/v1", SECRET)
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    assert "gpt-x" in repr(settings)


# -- errors from the endpoint -------------------------------------------------------------

@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_unreachable_endpoint_is_a_quick_claw_error(provider):
    base_url = f"http://127.0.0.1:{free_port()}" + ("/v1" if provider == "openai" else "")
    model = make_model(ModelSettings(provider, "m", base_url, SECRET, timeout=2.0, max_retries=0))
    started = time.monotonic()
    with pytest.raises(ClawError) as error:
        model.complete(MESSAGES)
    assert time.monotonic() - started < 2
    assert error.value.message == f"cannot reach the model endpoint at {base_url}"
    assert "base_url" in error.value.hint
    assert SECRET not in str(error.value)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_an_error_never_prints_the_key_in_an_attempts_gateway_url(provider):
    """An attempt reaches the gateway at /a/TOKEN: the token is its key."""
    token = "1-3f9a0c5e7b2d4f6a8c0e"
    base_url = f"http://127.0.0.1:{free_port()}/a/{token}" + ("/v1" if provider == "openai" else "")
    with pytest.raises(ClawError) as error:
        make_model(ModelSettings(provider, "m", base_url, SECRET, timeout=2.0, max_retries=0)).complete(MESSAGES)
    assert token not in str(error.value) and token not in (error.value.hint or "")
    assert "/a/<key>" in error.value.message


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_authentication_error_shows_the_upstream_message_not_the_key(provider):
    script = Script.from_rules([{"steps": [{"error": 401, "message": "Incorrect API key provided (upstream)"}]}])
    with ScriptedServer(script) as server:
        with pytest.raises(ClawError) as error:
            make_model(settings_for(server, provider)).complete(MESSAGES)
    assert "Incorrect API key provided (upstream)" in error.value.message
    assert SECRET not in str(error.value) and error.value.hint
    assert error.value.__cause__ is None and error.value.__suppress_context__


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_other_status_errors_show_status_and_upstream_message(provider):
    script = Script.from_rules([{"steps": [{"error": 503, "message": "overloaded, try later"}]}])
    with ScriptedServer(script) as server:
        with pytest.raises(ClawError) as error:
            make_model(settings_for(server, provider)).complete(MESSAGES)
        assert len(server.requests) == 1  # max_retries=0 reached the SDK
    assert "503" in error.value.message and "overloaded, try later" in error.value.message
    assert error.value.hint


def test_retries_are_passed_to_the_sdk():
    script = Script.from_rules([{"steps": [{"error": 500, "message": "flaky"}]}])
    with ScriptedServer(script) as server:
        with pytest.raises(ClawError):
            make_model(settings_for(server, "openai", max_retries=1)).complete(MESSAGES)
        assert len(server.requests) == 2


def test_script_miss_surfaces_as_a_400_claw_error():
    with ScriptedServer(Script.from_rules([{"match": "never", "steps": [{"text": "x"}]}])) as server:
        with pytest.raises(ClawError) as error:
            make_model(settings_for(server, "openai")).complete(MESSAGES)
    assert "400" in error.value.message and "no rule matches this conversation" in error.value.message


def test_timeout_is_a_claw_error():
    script = Script.from_rules([{"steps": [{"text": "late", "delay": 4.0}]}])
    with ScriptedServer(script) as server:
        model = make_model(settings_for(server, "anthropic", timeout=0.3))
        started = time.monotonic()
        with pytest.raises(ClawError) as error:
            model.complete(MESSAGES)
        assert time.monotonic() - started < 3.0   # well before the reply: room for a loaded machine
    assert "did not answer" in error.value.message and server.url in error.value.message


# -- resolving settings from config and environment --------------------------------------

def test_config_values_win_over_the_environment():
    env = {"CLAW_MODEL": "env-model", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "env-key",
           "MY_KEY": "config-key"}
    settings = resolve(env, provider="openai", model="config-model", base_url="https://llm.internal/v1",
                       api_key_env="MY_KEY")
    assert (settings.provider, settings.model, settings.base_url, settings.api_key) == (
        "openai", "config-model", "https://llm.internal/v1", "config-key")


def test_environment_fallbacks_for_openai():
    settings = resolve({"OPENAI_MODEL": "gpt-env", "OPENAI_API_KEY": "k1", "OPENAI_BASE_URL": "https://x/v1"})
    assert (settings.provider, settings.model, settings.base_url, settings.api_key) == (
        "openai", "gpt-env", "https://x/v1", "k1")
    assert resolve({"CLAW_MODEL": "claw", "OPENAI_MODEL": "gpt-env", "OPENAI_API_KEY": "k"}).model == "claw"


def test_provider_is_inferred_from_anthropic_variables():
    settings = resolve({"ANTHROPIC_API_KEY": "ak", "ANTHROPIC_MODEL": "claude-x"})
    assert (settings.provider, settings.model, settings.api_key, settings.base_url) == (
        "anthropic", "claude-x", "ak", None)
    by_url = resolve({"ANTHROPIC_BASE_URL": "http://127.0.0.1:8/", "CLAW_MODEL": "m"})
    assert by_url.provider == "anthropic" and by_url.base_url == "http://127.0.0.1:8/"
    # With OpenAI variables set too, the default stays openai.
    both = resolve({"ANTHROPIC_API_KEY": "ak", "OPENAI_API_KEY": "ok", "CLAW_MODEL": "m"})
    assert both.provider == "openai" and both.api_key == "ok"
    # Any OPENAI_* variable keeps the default on openai.
    with pytest.raises(ClawError, match="OPENAI_API_KEY"):
        resolve({"ANTHROPIC_API_KEY": "ak", "OPENAI_MODEL": "g"})
    # OPENAI_MODEL does not belong to anthropic: it does not configure an anthropic agent.
    assert resolve({"ANTHROPIC_API_KEY": "ak", "ANTHROPIC_MODEL": "c", "OPENAI_MODEL": "g"},
                   provider="anthropic").model == "c"


def test_empty_values_count_as_unset():
    settings = resolve({"OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": "ak", "CLAW_MODEL": "m", "OPENAI_BASE_URL": ""},
                       provider="", model="", base_url="", api_key_env="")
    assert settings.provider == "anthropic" and settings.api_key == "ak"


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:8080/v1", "http://localhost:1234", "http://[::1]:9/v1",
                                      "http://127.0.0.5:80"])
def test_loopback_endpoint_without_a_key_uses_a_placeholder(base_url):
    assert resolve({}, model="m", base_url=base_url).api_key == "none"
    assert resolve({}, provider="anthropic", model="m", base_url=base_url).api_key == "none"


def test_no_model_is_a_claw_error_with_the_fix():
    with pytest.raises(ClawError) as error:
        resolve({"OPENAI_API_KEY": "k", "ANTHROPIC_MODEL": "claude"})
    assert error.value.message == "no model configured for agent 'builtin'"
    for fix in ("[agents.builtin]", ".claw/config.toml", "CLAW_MODEL", "OPENAI_API_KEY", "claw fake-llm --script"):
        assert fix in error.value.hint


def test_no_key_for_a_remote_endpoint_names_the_variable():
    with pytest.raises(ClawError) as error:
        resolve({"CLAW_MODEL": "m"}, base_url="https://api.example.invalid/v1")
    assert "OPENAI_API_KEY" in str(error.value)
    with pytest.raises(ClawError) as error:
        resolve({"OPENAI_API_KEY": "other"}, model="m", api_key_env="TEAM_KEY")
    assert "TEAM_KEY" in str(error.value)
    with pytest.raises(ClawError) as error:
        resolve({}, provider="anthropic", model="m")
    assert "ANTHROPIC_API_KEY" in str(error.value)


def test_provider_spelling_and_sdk_limits():
    settings = resolve({"ANTHROPIC_API_KEY": "k"}, provider=" Anthropic ", model="m")
    assert settings.provider == "anthropic" and settings.max_retries == 2 and settings.timeout == 120.0
    tuned = resolve_model_settings(provider="openai", model="m", base_url=None, api_key_env=None,
                                   agent_name="a", env={"OPENAI_API_KEY": "k"}, timeout=5.0, max_retries=0)
    assert (tuned.timeout, tuned.max_retries) == (5.0, 0)


def test_unknown_provider_lists_the_allowed_ones():
    with pytest.raises(ClawError) as error:
        resolve({"CLAW_MODEL": "m", "OPENAI_API_KEY": "k"}, provider="gemini")
    assert "gemini" in error.value.message
    assert "openai" in error.value.hint and "anthropic" in error.value.hint


def test_resolved_settings_reach_the_scripted_server():
    with ScriptedServer(Script.from_rules([{"steps": [{"done": "ok"}]}])) as server:
        settings = resolve({"ANTHROPIC_BASE_URL": server.url, "CLAW_MODEL": "scripted"})
        reply = make_model(settings).complete(MESSAGES)
    assert settings.provider == "anthropic" and settings.api_key == "none"
    assert reply.text == "DONE: ok" and reply.input_tokens > 0
