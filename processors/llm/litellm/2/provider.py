"""llm/litellm@2: chat completion through litellm, many providers behind one API.

Inputs: ``{"schema":"v1","params":{"model":…,"messages":[{"role":…,"content":…}],
"temperature":…,"max_tokens":…}}``, as llm/litellm@1 takes them.

- ``mock``: litellm's own mock response (``mock_response``): no network, no secret. ``params``
  may be empty: the model defaults to ``mock-gpt`` and the messages to one user message
  "Hello from proctor". The reply quotes the last user message and draws words from the
  inputs-seeded generator, so the same inputs give the same bytes.
- ``real``: ``litellm.completion`` with the key of the ``OPENAI_API_KEY`` secret and, when set,
  ``OPENAI_BASE_URL`` as the API base (its ``user:pass@`` dropped: the key is the only
  credential sent). A model without a ``provider/`` prefix goes to the OpenAI-compatible
  endpoint; ``model`` and ``messages`` are required.

Outputs, as llm/litellm@1: ``text/response.txt`` (the reply) and ``metadata.json`` (model,
finish reason, token counts); usage carries the token counts.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# The model cost map ships with litellm: without this, importing it fetches the map.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# Importing litellm names a file under the temporary directory, and the container's root
# filesystem is read-only, so no candidate passes `gettempdir`'s write probe. Named, not
# probed: nothing this processor does writes there.
if tempfile.tempdir is None and not os.access("/tmp", os.W_OK):
    tempfile.tempdir = "/tmp"

import litellm  # noqa: E402
from proctor_sdk import Context, Output, ProviderError, ProviderResult  # noqa: E402

PROCESSOR_REF = "llm/litellm@2"
API_KEY_SECRET = "OPENAI_API_KEY"
BASE_URL_VAR = "OPENAI_BASE_URL"
MOCK_MODEL = "mock-gpt"
MOCK_PROMPT = "Hello from proctor"

# Words the mock reply draws from, and how many it draws.
VOCABULARY = (
    "artifact bright careful deterministic evidence fast gentle hash index journal kind "
    "ledger mock note output proctor quiet receipt steady trace useful verified worker yes"
).split()
DRAWN_WORDS = 12
# The longest quote of the last user message, in characters.
QUOTE_CHARS = 80

litellm.suppress_debug_info = True


def provider(inputs: dict[str, Any], ctx: Context) -> ProviderResult:
    """Answers the chat in ``inputs`` in the context's mode."""
    if inputs.get("schema") != "v1":
        raise ProviderError.inputs(f"schema must be `v1`, not `{inputs.get('schema')}`")
    params = inputs.get("params") or {}
    response = _mock(params, ctx) if ctx.mode == "mock" else _real(params, ctx)
    choice = response.choices[0]
    usage = response.usage
    metadata = {
        "model": response.model or params.get("model") or MOCK_MODEL,
        "finish_reason": choice.finish_reason or "unknown",
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    return ProviderResult(
        outputs=[
            Output.text("text/response.txt", choice.message.content or ""),
            Output.json("metadata.json", metadata),
        ],
        processor_info=f"{PROCESSOR_REF} {ctx.mode} model={metadata['model']}",
        usage={key: metadata[key] for key in ("prompt_tokens", "completion_tokens", "total_tokens")},
    )


def _mock(params: dict[str, Any], ctx: Context) -> Any:
    """litellm's mock completion of a deterministic reply; defaults fill what is absent."""
    model = params.get("model") or MOCK_MODEL
    messages = params.get("messages") or [{"role": "user", "content": MOCK_PROMPT}]
    last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    quote = " ".join(last_user.split())[:QUOTE_CHARS]
    rng = ctx.rng()
    drawn = " ".join(VOCABULARY[rng.randrange(len(VOCABULARY))] for _ in range(DRAWN_WORDS))
    reply = f'Mock reply from {model} to {len(messages)} message(s). You said: "{quote}". {drawn}.\n'
    return litellm.completion(
        **_routing(model),
        messages=messages,
        mock_response=reply,
        **_sampling(params),
    )


def _real(params: dict[str, Any], ctx: Context) -> Any:
    """One completion from the configured provider."""
    model, messages = params.get("model"), params.get("messages")
    if not model or not messages:
        raise ProviderError.inputs("real mode needs params.model and a non-empty params.messages")
    base_url = ctx.env(BASE_URL_VAR)
    try:
        return litellm.completion(
            **_routing(model),
            messages=messages,
            api_key=ctx.secret(API_KEY_SECRET),
            api_base=_without_userinfo(base_url) if base_url else None,
            num_retries=0,
            max_retries=0,
            **_sampling(params),
        )
    except Exception as error:  # litellm maps every provider failure to its own exceptions
        raise ProviderError.failed(f"the provider call failed: {type(error).__name__}: {error}") from error


def _routing(model: str) -> dict[str, str]:
    """A ``provider/model`` goes where litellm routes it; a bare model name to the
    OpenAI-compatible endpoint."""
    if "/" in model:
        return {"model": model}
    return {"model": model, "custom_llm_provider": "openai"}


def _sampling(params: dict[str, Any]) -> dict[str, Any]:
    """The sampling parameters ``params`` sets."""
    return {key: params[key] for key in ("temperature", "max_tokens") if key in params}


def _without_userinfo(url: str) -> str:
    """``url`` without its ``user:pass@``."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
