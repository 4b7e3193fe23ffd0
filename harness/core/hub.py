"""Is the Hugging Face hub reachable? Asked before anything would wait on it, so an offline machine fails in
seconds with the local alternative named, instead of retrying for minutes.

The endpoint is `HF_ENDPOINT` (default https://huggingface.co), as for huggingface_hub and datasets. With
`HF_HUB_OFFLINE` (or `HF_DATASETS_OFFLINE` for data) set, the libraries read their local caches only and do not
wait on the network, so no probe is made.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from harness.core.types import BenchError

PROBE_SECONDS = 3.0


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def offline(datasets: bool = False) -> bool:
    flags = ["HF_HUB_OFFLINE"] + (["HF_DATASETS_OFFLINE"] if datasets else [])
    return any(os.environ.get(f, "").strip().lower() in ("1", "true", "yes", "on") for f in flags)


def reachable(timeout: float = PROBE_SECONDS) -> bool:
    """A TCP connection to the endpoint's host opens within `timeout` seconds."""
    url = urlparse(endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def require_hub(what: str, fix: str, *, datasets: bool = False) -> None:
    """Fail now, in one line, when `what` needs the hub and it cannot be reached (and no offline flag is set)."""
    if offline(datasets) or reachable():
        return
    raise BenchError(f"{what} needs the Hugging Face hub, which cannot be reached ({endpoint()}): {fix}")
