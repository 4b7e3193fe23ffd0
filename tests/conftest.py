"""Session-wide test settings."""

import os

from harness.backends.models import cache_dir

# The CLI's default backend is `auto` (vLLM when installed). CLI tests are written against the HF backend and
# tiny models; the vLLM backend has its own tests (tests/test_vllm_backend.py) that ask for it by name.
os.environ["BENCH_BACKEND"] = "hf"

# Property-based tests (hypothesis): their example database and other files live under the harness cache
# ($BENCH_CACHE_DIR/hypothesis; .ci/run points BENCH_CACHE_DIR at the CI cache), so failing examples found in
# one CI run are replayed first in the next, and no .hypothesis/ folder appears in the working tree. No
# deadline: the machine is shared and timings vary; example counts are set per test (kept small: the new
# tests take seconds).
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(cache_dir() / "hypothesis"))

from hypothesis import settings  # noqa: E402  (after the storage folder is set)
from hypothesis.database import DirectoryBasedExampleDatabase  # noqa: E402

settings.register_profile(
    "bench", database=DirectoryBasedExampleDatabase(os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] + "/examples"),
    deadline=None, max_examples=100,
)
settings.load_profile("bench")
