"""Is the Hugging Face hub reachable? Asked before anything would wait on it, so an offline machine fails in
seconds with the local alternative named, instead of retrying for minutes.

The endpoint is `HF_ENDPOINT` (default https://huggingface.co), as for huggingface_hub and datasets. With
`HF_HUB_OFFLINE` (or `HF_DATASETS_OFFLINE` for data) set, the libraries read their local caches only and do not
wait on the network, so no probe is made.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from urllib.parse import urlparse

from harness.core.env import env_flag, env_text
from harness.core.types import BenchError

PROBE_SECONDS = 3.0
DEFAULT_ENDPOINT = "https://huggingface.co"


def endpoint(environ: Mapping[str, str] | None = None) -> str:
    """`HF_ENDPOINT` (default https://huggingface.co): an http(s) URL with a host and, if any, a valid port."""
    return _host_port(environ)[0]


def _host_port(environ: Mapping[str, str] | None = None) -> tuple[str, str, int]:
    url = (env_text("HF_ENDPOINT", environ) or DEFAULT_ENDPOINT).rstrip("/")
    try:
        parts = urlparse(url)
        host, port = parts.hostname, parts.port  # .port raises ValueError on 'host:abc' or 'host:99999'
    except ValueError:
        host = port = None
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise BenchError(f"HF_ENDPOINT={url!r} is not an http(s) URL with a host: set it to e.g. {DEFAULT_ENDPOINT} "
                         "(or unset it)")
    return url, host, port or (443 if parts.scheme == "https" else 80)


def offline(datasets: bool = False, environ: Mapping[str, str] | None = None) -> bool:
    flags = ["HF_HUB_OFFLINE"] + (["HF_DATASETS_OFFLINE"] if datasets else [])
    return any([env_flag(f, False, environ) for f in flags])  # a list: every flag is checked


def reachable(timeout: float = PROBE_SECONDS) -> bool:
    """A TCP connection to the endpoint's host opens within `timeout` seconds."""
    _, host, port = _host_port()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_hub(what: str, fix: str, *, datasets: bool = False) -> None:
    """Fail now, in one line, when `what` needs the hub and it cannot be reached (and no offline flag is set)."""
    if offline(datasets) or reachable():
        return
    raise BenchError(f"{what} needs the Hugging Face hub, which cannot be reached ({endpoint()}): {fix}")
