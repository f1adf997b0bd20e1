"""Imports a generated Modal app with the real `modal` package and prints what Modal would
deploy, as one JSON object on stdout.

Usage: python3 introspect_modal_app.py APP_FILE FUNCTION_NAME

Nothing here needs a token or the network: Modal objects are lazy until deployed. Public
API is used where modal 1.x has one (`Function.info()`, `App.name`); the rest reads the
objects the decorators built (`_Function._spec`, `_Function._webhook_config`, the image
loader's closure), as found in modal/_functions.py, modal/_image.py and modal/secret.py.
"""

import importlib.util
import json
import sys

import modal
from modal._utils.async_utils import synchronizer
from modal_proto import api_pb2

# Image builder versions (a Modal workspace setting) whose Dockerfiles are read back: the
# ones that add Python without running a shell, which a `FROM scratch` image lacks.
IMAGE_BUILDER_VERSIONS = ("2025.06", "2026.10")


def closure(function):
    """The free variables of a function, by name."""
    cells = function.__closure__ or ()
    return dict(zip(function.__code__.co_freevars, (cell.cell_contents for cell in cells)))


def secret_name(secret):
    """The deployed name of a `Secret.from_name` secret, else None."""
    return getattr(secret, "_name", None)


def dockerfile(image_loader, version):
    """The Dockerfile commands Modal builds the image from with builder `version`, base image
    first, choosing the layering the image's loader chooses (modal/_image.py)."""
    if version > "2025.06":
        split = closure(image_loader["split_image"]._load)
        base = closure(split["base_images"]["base"]._load)
        return base["dockerfile_function"](version).commands + split["dockerfile_function"](version).commands
    single = closure(image_loader["single_layer_image"]._load)
    return single["dockerfile_function"](version).commands


def main():
    path, function_name = sys.argv[1], sys.argv[2]
    spec = importlib.util.spec_from_file_location("generated_app", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    apps = [value for value in vars(module).values() if isinstance(value, modal.App)]
    assert len(apps) == 1, f"expected one modal.App, found {len(apps)}"
    function = getattr(module, function_name)
    assert isinstance(function, modal.Function), f"{function_name} is not a modal.Function"
    info = function.info()  # local, no network: the decorator recorded it

    raw = synchronizer._translate_in(function)
    image = raw._spec.image
    image_loader = closure(image._load)
    single_layer = closure(image_loader["single_layer_image"]._load)
    registry_config = single_layer["image_registry_config"]
    registry_secret = getattr(registry_config, "secret", None)

    named_secrets = []
    env = {}
    for secret in raw._spec.secrets:
        if secret_name(secret) is not None:
            named_secrets.append(secret_name(secret))
        elif hasattr(secret, "_load_env_dict"):
            env.update(secret._load_env_dict())
        else:
            raise AssertionError(f"unexpected secret {secret!r}")

    webhook = raw._webhook_config
    summary = {
        "modal_version": modal.__version__,
        "app_name": apps[0].name,
        "function": raw._tag,
        "image": {
            "repr": repr(image),
            "add_python": image_loader["add_python"],
            "registry_secret": secret_name(registry_secret) if registry_secret else None,
            "dockerfiles": {version: dockerfile(image_loader, version) for version in IMAGE_BUILDER_VERSIONS},
        },
        "cpu": info.cpu,
        "memory_mib": info.memory_mib,
        "timeout": info.timeout,
        "gpu": raw._spec.gpus,
        "secrets": named_secrets,
        "env": env,
        "volumes": {mount: volume.name for mount, volume in info.volumes.items()},
        "web": {
            "kind": api_pb2.WebhookType.Name(webhook.type),
            "label": webhook.requested_suffix,
            "port": webhook.web_server_port,
            "startup_timeout": webhook.web_server_startup_timeout,
            "requires_proxy_auth": webhook.requires_proxy_auth,
            "unauthenticated": info.web_info.unauthenticated,
        },
    }
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
