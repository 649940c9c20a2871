"""Model clients through the official SDKs: any OpenAI-compatible chat endpoint, or Anthropic.

    settings = resolve_model_settings(provider=None, model=None, base_url=None, api_key_env=None,
                                      agent_name="builtin", env=os.environ)
    reply = make_model(settings).complete([{"role": "user", "content": "hi"}])
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlparse

from ..errors import ClawError

PROVIDERS = ("openai", "anthropic")
LOCAL_PLACEHOLDER_KEY = "none"


@dataclass(frozen=True)
class ModelSettings:
    provider: str
    model: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 120.0
    max_retries: int = 2
    max_output_tokens: int = 4096


@dataclass(frozen=True)
class ModelReply:
    text: str
    input_tokens: int
    output_tokens: int


class Model(Protocol):
    settings: ModelSettings

    def complete(self, messages: list[dict]) -> ModelReply: ...


def _is_loopback(url: str | None) -> bool:
    host = urlparse(url or "").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_model_settings(*, provider: str | None, model: str | None, base_url: str | None,
                           api_key_env: str | None, agent_name: str, env: Mapping[str, str],
                           timeout: float = 120.0, max_retries: int = 2) -> ModelSettings:
    """Config values first, then the usual environment variables; a clear error when unset."""
    def get(name: str) -> str | None:
        return env.get(name) or None

    provider = (provider or "").strip().lower()
    if not provider:
        anthropic_set = get("ANTHROPIC_API_KEY") or get("ANTHROPIC_BASE_URL")
        openai_set = get("OPENAI_API_KEY") or get("OPENAI_BASE_URL") or get("OPENAI_MODEL")
        provider = "anthropic" if anthropic_set and not openai_set else "openai"
    if provider not in PROVIDERS:
        raise ClawError(f"agent '{agent_name}': unknown provider '{provider}'",
                        hint=f"use one of: {', '.join(PROVIDERS)} (any OpenAI-compatible server is 'openai')")
    prefix = provider.upper()
    model = model or get("CLAW_MODEL") or get(f"{prefix}_MODEL")
    if not model:
        raise ClawError(
            f"no model configured for agent '{agent_name}'",
            hint=f"set `model` under [agents.{agent_name}] in .claw/config.toml or export CLAW_MODEL, "
                 f"with {prefix}_API_KEY (and {prefix}_BASE_URL for a compatible server); to try "
                 "offline, run `claw fake-llm --script FILE` and set base_url to the URL it prints")
    base_url = base_url or get(f"{prefix}_BASE_URL")
    key_name = api_key_env or f"{prefix}_API_KEY"
    api_key = get(key_name)
    if not api_key:
        if not _is_loopback(base_url):
            raise ClawError(f"agent '{agent_name}': no API key for {provider} ({key_name} is not set)",
                            hint=f"export {key_name}=..., or set api_key_env under [agents.{agent_name}]")
        api_key = LOCAL_PLACEHOLDER_KEY
    return ModelSettings(provider, model, base_url, api_key, timeout=timeout, max_retries=max_retries)


def _endpoint(settings: ModelSettings) -> str:
    return _without_key(settings.base_url) if settings.base_url else f"the {settings.provider} API"


def _without_key(url: str) -> str:
    """The URL as an error may print it: an attempt's gateway URL carries the attempt's key in
    its path (/a/TOKEN), other URLs may carry one as user:password@ or in the query."""
    url = re.sub(r"/a/[^/?#]+", "/a/<key>", url)
    url = re.sub(r"//[^/@]+@", "//<key>@", url)
    return url.split("?", 1)[0] + ("?<query>" if "?" in url else "")


def _translate(error: Exception, settings: ModelSettings, sdk) -> ClawError:
    """SDK errors into one line a person can act on; the key never appears.

    `sdk` is the `openai` or `anthropic` module: both name their errors alike. They are
    imported only when used, since each costs about a second of start-up.
    """
    where = _endpoint(settings)
    if isinstance(error, sdk.APITimeoutError):
        return ClawError(f"the model endpoint at {where} did not answer within {settings.timeout:.0f} s",
                         hint="check that the server is up and not overloaded")
    if isinstance(error, sdk.APIConnectionError):
        return ClawError(f"cannot reach the model endpoint at {where}",
                         hint="check base_url and that the server is running")
    if isinstance(error, sdk.APIStatusError):
        message = _upstream_message(error)
        if error.status_code in (401, 403):
            return ClawError(f"the model endpoint at {where} refused the key: {message}",
                             hint="check the API key variable named by api_key_env")
        if error.status_code == 404:
            return ClawError(f"model '{settings.model}' or its route was not found at {where}: {message}",
                             hint="check `model` and `base_url`")
        return ClawError(f"the model endpoint at {where} answered {error.status_code}: {message}",
                         hint="retry later if the server is overloaded (429, 5xx); otherwise check the "
                              "model name and the request")
    return ClawError(f"model call failed: {error}")


def _upstream_message(error) -> str:
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(error.message)


class OpenAIChatModel:
    def __init__(self, settings: ModelSettings) -> None:
        import openai

        self.settings = settings
        self._sdk = openai
        self._client = openai.OpenAI(base_url=settings.base_url, api_key=settings.api_key,
                                     timeout=settings.timeout, max_retries=settings.max_retries)

    def complete(self, messages: list[dict]) -> ModelReply:
        try:
            response = self._client.chat.completions.create(
                model=self.settings.model, messages=messages,
                max_tokens=self.settings.max_output_tokens)
        except self._sdk.OpenAIError as error:
            raise _translate(error, self.settings, self._sdk) from None
        usage = response.usage
        text = response.choices[0].message.content if response.choices else ""
        return ModelReply(text or "", usage.prompt_tokens if usage else 0,
                          usage.completion_tokens if usage else 0)


class AnthropicModel:
    def __init__(self, settings: ModelSettings) -> None:
        import anthropic

        self.settings = settings
        self._sdk = anthropic
        self._client = anthropic.Anthropic(base_url=settings.base_url, api_key=settings.api_key,
                                           timeout=settings.timeout, max_retries=settings.max_retries)

    def complete(self, messages: list[dict]) -> ModelReply:
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        turns = [m for m in messages if m["role"] != "system"]
        try:
            response = self._client.messages.create(
                model=self.settings.model, max_tokens=self.settings.max_output_tokens,
                messages=turns, **({"system": system} if system else {}))
        except self._sdk.AnthropicError as error:
            raise _translate(error, self.settings, self._sdk) from None
        text = "".join(block.text for block in response.content if block.type == "text")
        return ModelReply(text, response.usage.input_tokens, response.usage.output_tokens)


def make_model(settings: ModelSettings) -> Model:
    if settings.provider == "anthropic":
        return AnthropicModel(settings)
    return OpenAIChatModel(settings)
