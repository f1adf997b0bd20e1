"""Processor SDK for proctor: a processor is a thin `main` plus a provider; the SDK serves
the HTTP contract and writes outputs, the outputs index and receipts exactly as the Rust
SDK (`crates/proctor-sdk`) does.

```python
from proctor_sdk import Context, Output, Processor, ProviderError, ProviderResult, serve

def provider(inputs: dict, ctx: Context) -> ProviderResult:
    text = inputs.get("text")
    if not isinstance(text, str):
        raise ProviderError.inputs("`text` is missing")
    return ProviderResult(outputs=[Output.text("upper.txt", text.upper())],
                          processor_info="example/upper@1")

if __name__ == "__main__":
    serve(Processor(ref="example/upper@1", provider=provider))
```

The environment is the Rust SDK's: `PROCTOR_PORT` (default 8000), `PROCTOR_BIND` (default
`0.0.0.0`), `PROCTOR_SOCKET` (a unix socket instead of a port), `PROCTOR_IMAGE_DIGEST`
(required: without it `/healthz` answers `setup_failed` and every run 500
`ERR_IMAGE_UNPINNED`), `PROCTOR_ARTIFACTS_ROOT` (default `/artifacts`),
`PROCTOR_CONCURRENCY`, and the runtime limits `PROCTOR_CPU`, `PROCTOR_MEMORY_GB`,
`PROCTOR_GPU` that the env fingerprint names.
"""

from ._errors import CanonError, ErrorCode
from ._redact import Redactor
from ._server import serve
from .provider import (
    Context,
    Mode,
    Output,
    Processor,
    Provider,
    ProviderError,
    ProviderResult,
    SetupLog,
    SetupStep,
)

__all__ = [
    "CanonError",
    "Context",
    "ErrorCode",
    "Mode",
    "Output",
    "Processor",
    "Provider",
    "ProviderError",
    "ProviderResult",
    "Redactor",
    "SetupLog",
    "SetupStep",
    "serve",
]
