"""The server's configuration, read from the variables the Rust SDK reads."""

from pathlib import Path

import pytest

from proctor_sdk._config import ConfigError, ServerConfig
from proctor_sdk._redact import redactor_from_env


def test_defaults_apply_when_unset() -> None:
    config = ServerConfig.from_vars({})
    assert (config.bind, config.port, config.socket) == ("0.0.0.0", 8000, None)
    assert config.image_digest is None
    assert config.runtime_limits() == []
    assert config.artifacts_root == Path("/artifacts")
    assert config.concurrency is None


def test_reads_every_variable_and_never_shows_a_value() -> None:
    config = ServerConfig.from_vars(
        {
            "PROCTOR_PORT": "9001",
            "PROCTOR_BIND": "127.0.0.1",
            "PROCTOR_SOCKET": "/run/p.sock",
            "PROCTOR_IMAGE_DIGEST": "sha256:ab",
            "PROCTOR_ARTIFACTS_ROOT": "/tmp/a",
            "PROCTOR_CONCURRENCY": "3",
            "PROCTOR_CPU": "0.5",
            "PROCTOR_MEMORY_GB": "2",
            "PROCTOR_GPU": "A100",
            "OPENAI_API_KEY": "sk-very-secret",
        }
    )
    assert (config.bind, config.port, config.socket) == ("127.0.0.1", 9001, Path("/run/p.sock"))
    assert (config.image_digest, config.concurrency) == ("sha256:ab", 3)
    assert config.runtime_limits() == [("cpu", "0.5"), ("memory_gb", "2"), ("gpu", "A100")]
    assert config.artifacts_root == Path("/tmp/a")
    assert config.var("OPENAI_API_KEY") == "sk-very-secret"
    assert "sk-very-secret" not in repr(config)
    assert ServerConfig.from_vars({"PROCTOR_IMAGE_DIGEST": ""}).image_digest is None


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("PROCTOR_PORT", "eighty", "invalid digit found in string"),
        ("PROCTOR_PORT", "65536", "number too large to fit in target type"),
        ("PROCTOR_BIND", "localhost", "invalid IP address syntax"),
        ("PROCTOR_CONCURRENCY", "0", "number would be zero for non-zero type; at least 1"),
        ("PROCTOR_CONCURRENCY", "-1", "invalid digit found in string; at least 1"),
    ],
)
def test_refuses_bad_port_bind_and_concurrency(name: str, value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as refused:
        ServerConfig.from_vars({name: value})
    assert str(refused.value) == f"{name}=`{value}` is invalid: {reason}"


def test_log_lines_mask_secret_looking_and_declared_variables() -> None:
    redactor = redactor_from_env(
        {
            "SERVICE_TOKEN": "tok-0123456789",
            "MY_SECRET_THING": "hush-hush-hush",
            "BASE": "http://127.0.0.1:9/v1",
            "HOME": "/home/someone",
        },
        ["BASE"],
    )
    text = "tok-0123456789 hush-hush-hush http://127.0.0.1:9/v1/chat /home/someone"
    assert redactor.redact(text) == "[REDACTED] [REDACTED] [REDACTED]/chat /home/someone"
