"""Session-wide test settings."""

import os

# The CLI's default backend is `auto` (vLLM when installed). CLI tests are written against the HF backend and
# tiny models; the vLLM backend has its own tests (tests/test_vllm_backend.py) that ask for it by name.
os.environ["BENCH_BACKEND"] = "hf"
