"""The LLM gateway: a metering proxy on 127.0.0.1 for OpenAI chat, OpenAI Responses, Anthropic Messages
and the Gemini API.

Every attempt is given its own key, `claw-<token>`, and/or the base URL `http://127.0.0.1:PORT/a/<token>`;
the gateway knows the attempt from it, swaps in the real upstream key (never shown to the agent),
routes by model name to an upstream from `[gateway]` in the config, checks the budgets, and
passes the reply through: streams event by event as they arrive, while their usage is read.
Each call is recorded (tokens, cost, latency, time to first token) with its transcript.

    with GatewayServer(project) as gateway:
        client = openai.OpenAI(base_url=gateway.attempt_url(attempt.id) + "/v1",
                               api_key=gateway.attempt_key(attempt.id))
"""

from __future__ import annotations

import asyncio
import email.utils
import fnmatch
import hashlib
import hmac
import itertools
import json
import logging
import os
import secrets as random_secrets
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from .. import private, redact
from ..config import GatewayConfig, UpstreamConfig, load_config
from ..errors import ConfigError
from ..models import LlmCall
from .meter import Caller, Meter, Refusal, cost_of, price_for
from .serve import BackgroundServer
from .usage import StreamTap, error_of, reply_of, usage_of

log = logging.getLogger("clawfleet.gateway")

API_PATHS = {"chat": "/chat/completions", "responses": "/responses", "messages": "/messages",
             "gemini": "/models/{target}"}   # target: MODEL:generateContent or MODEL:streamGenerateContent
GEMINI_CALLS = ("generateContent", "streamGenerateContent")
KEY_PREFIX = "claw-"
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
MAX_RETRY_WAIT_S = 30.0
HTTP_POOLS = 16
# Hop-by-hop, length and encoding headers are the proxy's own business; credentials are swapped.
_DROP_REQUEST_HEADERS = frozenset({"host", "content-length", "connection", "keep-alive", "transfer-encoding",
                                   "te", "upgrade", "proxy-authorization", "accept-encoding",
                                   "authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie"})
_DROP_RESPONSE_HEADERS = frozenset({"content-length", "connection", "keep-alive", "transfer-encoding",
                                    "content-encoding", "date", "server"})


# -- attempt keys ---------------------------------------------------------------------------

def load_secret(path: Path) -> bytes:
    """The gateway's signing secret, made on first use and kept private to this user."""
    try:
        secret = bytes.fromhex(path.read_text().strip())
        private.narrow(path)  # one an older version left readable
        return secret
    except (OSError, ValueError):
        private.folder(path.parent)
        secret = random_secrets.token_bytes(32)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secret.hex())
        return secret


def attempt_token(secret: bytes, attempt_id: int) -> str:
    """`<attempt id>.<signature>`: the gateway checks it without storing a key per attempt."""
    signature = hmac.new(secret, f"attempt:{attempt_id}".encode(), hashlib.sha256).hexdigest()[:32]
    return f"{attempt_id}.{signature}"


def experiment_token(secret: bytes, experiment_id: int) -> str:
    """`x<experiment id>.<signature>`: a research experiment's calls are metered too."""
    signature = hmac.new(secret, f"experiment:{experiment_id}".encode(), hashlib.sha256).hexdigest()[:32]
    return f"x{experiment_id}.{signature}"


def caller_of(secret: bytes, token: str) -> tuple[str, int] | None:
    """("attempt" | "experiment", id) of a valid token, else None."""
    number, _, _ = token.partition(".")
    kind, make = ("experiment", experiment_token) if number.startswith("x") else ("attempt", attempt_token)
    number = number.removeprefix("x")
    if not number.isdigit() or len(number) > 12:
        return None
    return (kind, int(number)) if hmac.compare_digest(make(secret, int(number)), token) else None


# -- errors in each API's own format -------------------------------------------------------

_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                    404: "not_found_error", 429: "rate_limit_error"}
_OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "insufficient_quota",
                 404: "invalid_request_error", 429: "rate_limit_error"}
_GOOGLE_STATUSES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 402: "RESOURCE_EXHAUSTED",
                    403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED"}


def api_error(api: str, status: int, message: str, code: str | None = None) -> JSONResponse:
    """An error the client's SDK reads as its provider's own; 4xx are marked not worth retrying."""
    headers = {"x-should-retry": "false"} if 400 <= status < 500 and status not in (408, 429) else {}
    if api == "messages":
        kind = _ANTHROPIC_TYPES.get(status, "api_error")
        body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    elif api == "gemini":
        kind = _GOOGLE_STATUSES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        body = {"error": {"code": status, "message": message, "status": kind}}
    else:
        kind = _OPENAI_TYPES.get(status, "server_error")
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class GatewayFailure(Exception):
    """The gateway could not get an answer from the upstream: status, message, call status."""

    def __init__(self, status: int, message: str, outcome: str) -> None:
        super().__init__(message)
        self.status, self.message, self.outcome = status, message, outcome


# -- config, routing -----------------------------------------------------------------------

class ConfigWatch:
    """The `[gateway]` section, read again when the file changes (at most once a second), so a
    raised budget or a new upstream applies without restarting; a broken edit keeps the last."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.clock = clock
        self.config = load_config(path).gateway
        self._mtime = self._stat()
        self._checked = clock()

    def _stat(self) -> float | None:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return None

    def get(self) -> GatewayConfig:
        now = self.clock()
        if now - self._checked >= 1.0:
            self._checked = now
            mtime = self._stat()
            if mtime != self._mtime:
                self._mtime = mtime
                try:
                    self.config = load_config(self.path).gateway
                except ConfigError as error:
                    log.warning("keeping the previous gateway config: %s", error.message)
        return self.config


def route(config: GatewayConfig, api: str, model: str) -> tuple[str, UpstreamConfig] | None:
    """The first upstream serving `api` with a pattern matching `model`, else the API's default
    (or the only upstream serving it)."""
    serving = [(name, up) for name, up in config.upstreams.items() if api in up.apis]
    for name, upstream in serving:
        if any(fnmatch.fnmatchcase(model, pattern) for pattern in upstream.models):
            return name, upstream
    if api in config.default:
        return config.default[api], config.upstreams[config.default[api]]
    if len(serving) == 1:
        return serving[0]
    return None


def _retry_wait(response: httpx.Response | None, backoff: float, attempt: int) -> float:
    if response is not None:
        milliseconds = response.headers.get("retry-after-ms")
        after = response.headers.get("retry-after")
        try:
            if milliseconds:
                return min(float(milliseconds) / 1000, MAX_RETRY_WAIT_S)
            if after:
                if after.strip().isdigit():
                    return min(float(after), MAX_RETRY_WAIT_S)
                when = email.utils.parsedate_to_datetime(after).timestamp()
                return min(max(when - time.time(), 0), MAX_RETRY_WAIT_S)
        except (ValueError, TypeError):
            pass
    return min(backoff * 2 ** attempt, MAX_RETRY_WAIT_S)


class _Relay(StreamingResponse):
    """A streaming response whose generator is always closed, even when the client went away
    while it waited at a `yield` (Starlette then only cancels the send); `on_done` runs after
    the last byte is sent, so recording the call never delays the end of the stream."""

    def __init__(self, content: AsyncIterator[bytes], *, on_done: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.on_done = on_done

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()
            self.on_done()


# -- the proxy -----------------------------------------------------------------------------

class Gateway:
    """The proxy of one project: its config, its attempts' keys, its meter, its FastAPI app."""

    def __init__(self, root: Path, *, on_call: Callable[[LlmCall], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        run_dir = root / ".claw" / "run"
        self.watch = ConfigWatch(root / ".claw" / "config.toml")
        redact.learn_env(redact.config_secret_names(load_config(root / ".claw" / "config.toml")))
        self.secret = load_secret(run_dir / "gateway.secret")
        self.meter = Meter(run_dir / "claw.db", run_dir / "attempts", clock=clock, on_call=on_call)
        self.clock = clock
        self._clients: list[httpx.AsyncClient] | None = None
        self._next_client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.app = self._build_app()

    def token(self, attempt_id: int) -> str:
        return attempt_token(self.secret, attempt_id)

    # -- upstream connection -------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        # Made on the server's own event loop, on first use. Several small pools, taken in turn:
        # httpx's pool scans all its connections for each request, which under 64 concurrent
        # streams cost more than the proxying itself.
        if self._clients is None:
            self._loop = asyncio.get_running_loop()
            tls = ssl.create_default_context()  # loading the CA store once, not per pool, saves 40 ms each
            self._clients = [httpx.AsyncClient(limits=httpx.Limits(max_connections=256, max_keepalive_connections=16),
                                               follow_redirects=False, trust_env=False, verify=tls)
                             for _ in range(HTTP_POOLS)]
            self._next_client = itertools.cycle(self._clients)
        return next(self._next_client)

    def close(self) -> None:
        """Close the upstream connections (from outside the server's loop) and the meter."""
        if self._clients is not None and self._loop is not None and self._loop.is_running():
            async def close_all() -> None:
                for client in self._clients or []:
                    await client.aclose()
            try:
                asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(5)
            except Exception:
                pass
        self._clients = None
        self.meter.close()

    async def _send(self, config: GatewayConfig, name: str, url: str, headers: dict[str, str],
                    content: bytes) -> tuple[httpx.Response, int]:
        """Send with retries while nothing has reached the client yet; (response, tries)."""
        timeout = httpx.Timeout(config.read_timeout, connect=config.connect_timeout,
                                pool=config.connect_timeout)
        client = self._http()
        for attempt in range(config.retries + 1):
            last = attempt == config.retries
            try:
                request = client.build_request("POST", url, headers=headers, content=content, timeout=timeout)
                response = await client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                if last:
                    reason = str(error) or type(error).__name__
                    raise GatewayFailure(502, f"clawfleet gateway: upstream '{name}' at {url} is unreachable: "
                                         f"{reason} (tried {attempt + 1} time(s)); start it, or fix "
                                         f"gateway.upstreams.{name}.base_url in .claw/config.toml",
                                         "unreachable") from None
                await asyncio.sleep(_retry_wait(None, config.retry_backoff, attempt))
                continue
            except httpx.TimeoutException:
                raise GatewayFailure(504, f"clawfleet gateway: upstream '{name}' did not answer within "
                                     f"{config.read_timeout:g} s (gateway.read_timeout)", "timeout") from None
            except httpx.HTTPError as error:
                raise GatewayFailure(502, f"clawfleet gateway: upstream '{name}' failed: {error}",
                                     "unreachable") from None
            should_retry = response.headers.get("x-should-retry")
            if (not last and response.status_code in RETRY_STATUSES and should_retry != "false") \
                    or (not last and should_retry == "true"):
                wait = _retry_wait(response, config.retry_backoff, attempt)
                await response.aclose()
                await asyncio.sleep(wait)
                continue
            return response, attempt + 1
        raise AssertionError("unreachable")

    # -- one call --------------------------------------------------------------------------

    async def handle(self, request: Request, api: str, token: str | None) -> Response:
        started, t0 = self.clock(), time.perf_counter()
        config = self.watch.get()
        caller = await self._caller(request, token)
        if isinstance(caller, str):
            return api_error(api, 401, caller, "invalid_api_key")
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return api_error(api, 400, "clawfleet gateway: the request body is not a JSON object")
        if api == "gemini":  # the model and whether to stream are in the path
            target = request.path_params["target"]
            model, _, method = target.partition(":")
            if method not in GEMINI_CALLS:
                return await self.passthrough(request, api, token)
            stream = method == "streamGenerateContent"
        else:
            model = body.get("model") if isinstance(body.get("model"), str) else ""
            stream = body.get("stream") is True
        call = LlmCall(caller.attempt_id, caller.task_id, api, model, "", "ok", started, stream=stream,
                       experiment_id=caller.experiment_id)
        routed = route(config, api, model)
        if routed is None:
            known = ", ".join(n for n, u in config.upstreams.items() if api in u.apis) or "none"
            return self._refuse(call, body, config, api_error(
                api, 404, f"clawfleet gateway: no upstream serves model '{model}' on the {api} API "
                f"(upstreams for it: {known}); add the model to gateway.upstreams.NAME.models or set "
                f"gateway.default.{api} in .claw/config.toml", "model_not_found"), "error", t0)
        call.upstream, upstream = routed
        refusal = await self.meter.check_budget(caller, config.budget)
        if refusal is not None:
            return self._refuse(call, body, config, self._over_budget(api, refusal), "refused", t0)
        key = os.environ.get(upstream.key_env) if upstream.key_env else None
        if upstream.key_env and not key:
            return self._refuse(call, body, config, api_error(
                api, 500, f"clawfleet gateway: upstream '{call.upstream}' takes its key from "
                f"${upstream.key_env}, which is not set where the gateway runs"), "error", t0)
        drop_usage_chunk = False
        if api == "chat" and stream and not (body.get("stream_options") or {}).get("include_usage"):
            # Ask for the usage chunk, read it, and keep it from a client that did not ask.
            forwarded = {**body, "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}
            raw, drop_usage_chunk = json.dumps(forwarded).encode(), True
        headers = self._headers(request, api, key)
        url = self._upstream_url(request, api, upstream)
        try:
            response, _tries = await self._send(config, call.upstream, url, headers, raw)
        except GatewayFailure as failure:
            return self._refuse(call, body, config, api_error(api, failure.status, failure.message),
                                failure.outcome, t0)
        call.http_status = response.status_code
        out_headers = {k: v for k, v in response.headers.items() if k.lower() not in _DROP_RESPONSE_HEADERS}
        secrets = self._secrets(config)
        if response.status_code < 400 and response.headers.get("content-type", "").startswith("text/event-stream"):
            tap = StreamTap(api, drop_usage_chunk=drop_usage_chunk)
            return _Relay(self._relay(response, tap, call, config, t0), status_code=response.status_code,
                          headers=out_headers,
                          on_done=lambda: self._record(call, body, config, secrets, reply=tap.reply.to_dict(),
                                                       response=None))
        try:
            content = await response.aread()
        except httpx.HTTPError as error:
            failure = (504, f"clawfleet gateway: upstream '{call.upstream}' did not finish its reply within "
                       f"{config.read_timeout:g} s (gateway.read_timeout)", "timeout") \
                if isinstance(error, httpx.TimeoutException) else \
                (502, f"clawfleet gateway: upstream '{call.upstream}' broke off its reply: {error}", "malformed")
            return self._refuse(call, body, config, api_error(api, failure[0], failure[1]), failure[2], t0)
        finally:
            await response.aclose()
        try:
            reply_body = json.loads(content)
        except ValueError:
            reply_body = None
        if response.status_code >= 400:
            # The upstream's own error, passed on as it is (an invalid key included).
            call.status, call.error = "error", (error_of(reply_body) or content[:500].decode("utf-8", "replace"))
        elif not isinstance(reply_body, dict):
            preview = content[:200].decode("utf-8", "replace")
            return self._refuse(call, body, config, api_error(
                api, 502, f"clawfleet gateway: upstream '{call.upstream}' answered {response.status_code} "
                f"with a body that is not a JSON object: {preview!r}"), "malformed", t0)
        else:
            usage = usage_of(api, reply_body.get("usageMetadata" if api == "gemini" else "usage"))
            call.input_tokens, call.output_tokens, call.cached_tokens = (
                usage.input_tokens, usage.output_tokens, usage.cached_tokens)
            call.cost = cost_of(usage, price_for(config.prices, model))
        call.latency_ms = (time.perf_counter() - t0) * 1000
        reply = reply_of(api, reply_body) if response.status_code < 400 else None

        async def record() -> None:  # after the response is sent
            self._record(call, body, config, secrets, reply=reply and reply.to_dict(), response=reply_body)
        return Response(content, status_code=response.status_code, headers=out_headers,
                        background=BackgroundTask(record))

    async def passthrough(self, request: Request, api: str, token: str | None, path: str | None = None) -> Response:
        """Forward a call that uses no tokens to the upstream that serves its API, unmetered."""
        config = self.watch.get()
        error_api = "chat" if api == "models" else api
        caller = await self._caller(request, token)
        if isinstance(caller, str):
            return api_error(error_api, 401, caller, "invalid_api_key")
        routed = None
        for candidate in ((api,) if api != "models" else ("responses", "chat", "messages")):
            routed = route(config, candidate, "")
            if routed is not None:
                api = candidate
                break
        if routed is None:
            return api_error(error_api, 404, f"clawfleet gateway: no upstream serves {request.url.path}")
        name, upstream = routed
        key = os.environ.get(upstream.key_env) if upstream.key_env else None
        url = self._upstream_url(request, api, upstream, path)
        timeout = httpx.Timeout(config.read_timeout, connect=config.connect_timeout)
        try:
            response = await self._http().request(request.method, url, headers=self._headers(request, api, key),
                                                  content=await request.body(), timeout=timeout)
        except httpx.HTTPError as error:
            return api_error(error_api, 502, f"clawfleet gateway: upstream '{name}' failed: {error}")
        headers = {k: v for k, v in response.headers.items() if k.lower() not in _DROP_RESPONSE_HEADERS}
        return Response(response.content, status_code=response.status_code, headers=headers)

    async def _relay(self, response: httpx.Response, tap: StreamTap, call: LlmCall,
                     config: GatewayConfig, t0: float) -> AsyncIterator[bytes]:
        finished = False
        try:
            async for chunk in response.aiter_bytes():
                out = tap.feed(chunk)
                if out:
                    yield out
            rest = tap.flush()
            if rest:
                yield rest
            finished = True
            if tap.error:
                call.status, call.error = ("malformed" if tap.malformed else "error"), tap.error
            elif not tap.completed:
                call.status, call.error = "incomplete", "the upstream closed the stream before its end event"
        except httpx.TimeoutException:
            call.status = "timeout"
            call.error = f"the upstream was silent for {config.read_timeout:g} s mid-stream (gateway.read_timeout)"
        except httpx.HTTPError as error:
            call.status, call.error = "incomplete", f"the upstream stream broke: {error}"
        finally:
            # A client may hang up once it has the end event, before the upstream closes: complete.
            if not finished and call.status == "ok" and not tap.completed:
                call.status, call.error = "disconnected", "the client went away mid-stream"
            with anyio.CancelScope(shield=True):
                await response.aclose()
            call.input_tokens, call.output_tokens, call.cached_tokens = (
                tap.usage.input_tokens, tap.usage.output_tokens, tap.usage.cached_tokens)
            call.cost = cost_of(tap.usage, price_for(config.prices, call.model))
            call.latency_ms = (time.perf_counter() - t0) * 1000
            if tap.first_output_at is not None:
                call.ttft_ms = (tap.first_output_at - t0) * 1000

    # -- helpers ---------------------------------------------------------------------------

    async def _caller(self, request: Request, token: str | None) -> Caller | str:
        """The attempt a request belongs to, or the reason it is refused."""
        if token is None:
            key = (request.headers.get("x-api-key") or request.headers.get("x-goog-api-key")
                   or request.query_params.get("key") or "")
            authorization = request.headers.get("authorization") or ""
            if authorization.lower().startswith("bearer "):
                key = key if key.startswith(KEY_PREFIX) else authorization[7:].strip()
            if key.startswith(KEY_PREFIX):
                token = key[len(KEY_PREFIX):]
        if not token:
            return ("clawfleet gateway: no attempt key; use the base URL http://127.0.0.1:PORT/a/TOKEN "
                    "or the API key claw-TOKEN that clawfleet gives each attempt (CLAW_GATEWAY_URL, "
                    "CLAW_GATEWAY_KEY; `claw gateway token ATTEMPT` prints them)")
        owner = caller_of(self.secret, token)
        caller = None if owner is None else await self.meter.caller(*owner)
        if caller is None:
            return ("clawfleet gateway: unknown attempt key (it was not made by this project's gateway, "
                    "or its attempt does not exist); `claw gateway token ATTEMPT` prints a valid one")
        ended = self.meter.ended(caller)
        if ended is not None:  # keys die with their attempt: one that leaked is worth nothing
            return (f"clawfleet gateway: the key of {caller.label} no longer works: it ended ({ended}). "
                    "Each attempt has its own key for as long as it runs; a new attempt gets a new one")
        return caller

    @staticmethod
    def _headers(request: Request, api: str, key: str | None) -> dict[str, str]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP_REQUEST_HEADERS}
        headers["accept-encoding"] = "identity"  # usage is read from the bytes as they pass
        if key:
            if api == "messages":
                headers["x-api-key"] = key
            elif api == "gemini":
                headers["x-goog-api-key"] = key
            else:
                headers["authorization"] = f"Bearer {key}"
        return headers

    @staticmethod
    def _upstream_url(request: Request, api: str, upstream: UpstreamConfig, path: str | None = None) -> str:
        """The upstream address of a request: its API path under the upstream's root, with the
        client's query (Anthropic's `beta=true`, Gemini's `alt=sse`) but never a key in it."""
        if path is None:
            path = API_PATHS[api].format(target=request.path_params.get("target", ""))
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "key"]
        return upstream.base_url + path + (f"?{urlencode(query)}" if query else "")

    @staticmethod
    def _secrets(config: GatewayConfig) -> tuple[str, ...]:
        return tuple(value for up in config.upstreams.values()
                     if up.key_env and (value := os.environ.get(up.key_env)))

    def _over_budget(self, api: str, refusal: Refusal) -> JSONResponse:
        return api_error(api, 402, refusal.message(), "budget_exceeded")

    def _refuse(self, call: LlmCall, body: dict[str, Any], config: GatewayConfig, reply: JSONResponse,
                status: str, t0: float) -> JSONResponse:
        call.status, call.http_status = status, reply.status_code
        call.error = error_of(json.loads(reply.body))
        call.latency_ms = (time.perf_counter() - t0) * 1000
        self._record(call, body, config, self._secrets(config), reply=None, response=None)
        return reply

    def _record(self, call: LlmCall, body: dict[str, Any], config: GatewayConfig, secrets: tuple[str, ...],
                *, reply: dict[str, Any] | None, response: Any) -> None:
        transcript = None
        if config.transcripts:
            transcript = {"at": call.started_at, "api": call.api, "model": call.model,
                          "upstream": call.upstream, "stream": call.stream, "status": call.status,
                          "http_status": call.http_status, "error": call.error,
                          "usage": {"input_tokens": call.input_tokens, "output_tokens": call.output_tokens,
                                    "cached_tokens": call.cached_tokens},
                          "request": body, "reply": reply, "response": response}
        self.meter.record(call, transcript, secrets)

    def _build_app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        def endpoint_for(api: str) -> Callable[[Request], Any]:
            async def endpoint(request: Request) -> Response:
                return await self.handle(request, api, request.path_params.get("token"))
            return endpoint

        for api, path in API_PATHS.items():
            versions = ("/v1beta", "/v1") if api == "gemini" else ("", "/v1")
            for prefix in (*versions, *(f"/a/{{token}}{v}" for v in versions)):
                app.add_api_route(prefix + path, endpoint_for(api), methods=["POST"])

        # Calls that cost nothing are passed through, unmetered: listing models, counting tokens.
        def passthrough_for(api: str, path: str) -> Callable[[Request], Any]:
            async def endpoint(request: Request) -> Response:
                return await self.passthrough(request, api, request.path_params.get("token"), path)
            return endpoint

        for prefix in ("", "/v1", "/a/{token}", "/a/{token}/v1"):
            app.add_api_route(prefix + "/messages/count_tokens",
                              passthrough_for("messages", "/messages/count_tokens"), methods=["POST"])
            app.add_api_route(prefix + "/models", passthrough_for("models", "/models"), methods=["GET"])

        @app.get("/health")
        async def health() -> dict[str, str]:
            return {"status": "ok"}

        return app


class GatewayServer(BackgroundServer):
    """The gateway served on 127.0.0.1 from a background thread; `port=0` picks a free port."""

    def __init__(self, root: Path, port: int = 0, *, on_call: Callable[[LlmCall], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.gateway = Gateway(root, on_call=on_call, clock=clock)
        super().__init__(self.gateway.app, port=port, name="gateway")

    def attempt_url(self, attempt_id: int) -> str:
        """The base URL of an attempt (Anthropic SDKs take it as is; OpenAI ones want `/v1` added)."""
        return f"{self.url}/a/{self.gateway.token(attempt_id)}"

    def attempt_key(self, attempt_id: int) -> str:
        return KEY_PREFIX + self.gateway.token(attempt_id)

    def experiment_url(self, experiment_id: int) -> str:
        return f"{self.url}/a/{experiment_token(self.gateway.secret, experiment_id)}"

    def experiment_key(self, experiment_id: int) -> str:
        return KEY_PREFIX + experiment_token(self.gateway.secret, experiment_id)

    def stop(self) -> None:
        if self._server is not None:
            self.gateway.close()
        super().stop()
