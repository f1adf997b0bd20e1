"""Server configuration, read from the container's environment (the same variables as the
Rust SDK's)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: Listen port; default `DEFAULT_PORT`.
ENV_PORT = "PROCTOR_PORT"
#: Listen address; default `0.0.0.0`.
ENV_BIND = "PROCTOR_BIND"
#: A unix socket to listen on instead of a port (the local adapter sets it in `mock` mode,
#: where the container has no network).
ENV_SOCKET = "PROCTOR_SOCKET"
#: The image digest or ID the container was started from; without it every run is refused.
ENV_IMAGE_DIGEST = "PROCTOR_IMAGE_DIGEST"
#: The runtime limits the adapter set, each part of the env fingerprint when set.
ENV_CPU = "PROCTOR_CPU"
ENV_MEMORY_GB = "PROCTOR_MEMORY_GB"
ENV_GPU = "PROCTOR_GPU"
#: The directory backing world `/artifacts/`; default `/artifacts`.
ENV_ARTIFACTS_ROOT = "PROCTOR_ARTIFACTS_ROOT"
#: How many runs are served at once, overriding the processor's declaration; at least 1.
ENV_CONCURRENCY = "PROCTOR_CONCURRENCY"
#: The port served when `PROCTOR_PORT` is unset.
DEFAULT_PORT = 8000

_DIGITS = re.compile(r"\+?[0-9]+")


class ConfigError(ValueError):
    """A `PROCTOR_*` variable with an unusable value."""

    def __init__(self, name: str, value: str, reason: str) -> None:
        super().__init__(f"{name}=`{value}` is invalid: {reason}")


@dataclass(frozen=True)
class ServerConfig:
    """How a processor server runs."""

    #: Address to listen on.
    bind: str
    #: Port to listen on.
    port: int
    #: The unix socket to listen on instead, when set.
    socket: Path | None
    #: Reported by `/healthz`, envelopes and receipts; `None` refuses every run.
    image_digest: str | None
    #: The directory backing world `/artifacts/`.
    artifacts_root: Path
    #: Overrides the processor's declared concurrency when set.
    concurrency: int | None
    #: The process environment; secrets and pass-through values come from it in `real`.
    environment: Mapping[str, str]

    @staticmethod
    def from_vars(environment: Mapping[str, str]) -> ServerConfig:
        """Reads the configuration from the given variables (the process's, or a test's)."""
        environment = dict(environment)

        def var(name: str) -> str | None:
            return environment.get(name) or None

        port_text = var(ENV_PORT)
        port = DEFAULT_PORT if port_text is None else _integer(ENV_PORT, port_text, 0, 65535)
        bind = var(ENV_BIND) or "0.0.0.0"
        if var(ENV_BIND) is not None:
            try:
                if "%" in bind:
                    raise ValueError(bind)
                ipaddress.ip_address(bind)
            except ValueError:
                raise ConfigError(ENV_BIND, bind, "invalid IP address syntax") from None
        concurrency_text = var(ENV_CONCURRENCY)
        concurrency = None
        if concurrency_text is not None:
            concurrency = _integer(ENV_CONCURRENCY, concurrency_text, 1, 2**32 - 1, "; at least 1")
        socket = var(ENV_SOCKET)
        return ServerConfig(
            bind=bind,
            port=port,
            socket=None if socket is None else Path(socket),
            image_digest=var(ENV_IMAGE_DIGEST),
            artifacts_root=Path(var(ENV_ARTIFACTS_ROOT) or "/artifacts"),
            concurrency=concurrency,
            environment=environment,
        )

    def var(self, name: str) -> str | None:
        """The non-empty value of variable `name`."""
        return self.environment.get(name) or None

    def runtime_limits(self) -> list[tuple[str, str]]:
        """The runtime limits the adapter set, as env-fingerprint pairs (`cpu`,
        `memory_gb`, `gpu`); unset ones left out."""
        pairs = [("cpu", ENV_CPU), ("memory_gb", ENV_MEMORY_GB), ("gpu", ENV_GPU)]
        return [(key, value) for key, name in pairs if (value := self.var(name)) is not None]

    def __repr__(self) -> str:
        return (
            f"ServerConfig(bind={self.bind!r}, port={self.port}, socket={self.socket!r}, "
            f"image_digest={self.image_digest!r}, artifacts_root={self.artifacts_root!r}, "
            f"concurrency={self.concurrency!r}, environment=[{len(self.environment)} variables])"
        )


def _integer(name: str, text: str, lowest: int, highest: int, hint: str = "") -> int:
    if not _DIGITS.fullmatch(text):
        reason = "invalid digit found in string"
    else:
        value = int(text)
        if lowest <= value <= highest:
            return value
        reason = (
            "number would be zero for non-zero type"
            if value == 0
            else "number too large to fit in target type"
        )
    raise ConfigError(name, text, reason + hint)
