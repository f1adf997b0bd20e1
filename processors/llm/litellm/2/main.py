"""llm/litellm@2: serves the provider (see provider.py) with the proctor SDK."""

from proctor_sdk import Processor, serve

from provider import API_KEY_SECRET, BASE_URL_VAR, PROCESSOR_REF, provider

PROCESSOR = Processor(
    ref=PROCESSOR_REF,
    provider=provider,
    required_secrets=[API_KEY_SECRET],
    passthrough_env=[BASE_URL_VAR],
    concurrency=1,
)

if __name__ == "__main__":
    serve(PROCESSOR)
