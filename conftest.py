"""`make test` runs a pytest-xdist worker per core (up to 4). Each worker, and every process a test starts, gets
its share of the cores as threads: otherwise N workers each run N threads on N cores, and OpenMP's spinning
threads slow every compute-bound test down. A thread count the user set is kept. The fixtures every test
folder uses are here too."""

import os
from pathlib import Path

import pytest

_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1 and "OMP_NUM_THREADS" not in os.environ:
    # the cores this process may run on (a container's share on Linux); macOS has no affinity call
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    os.environ["OMP_NUM_THREADS"] = str(max(1, _cores // _workers))


SHARED_DATA = Path(__file__).resolve().parent.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The real development data beside the checkout (``../shared/data``); skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (CI always has it)")
    return SHARED_DATA


@pytest.fixture
def write(tmp_path):
    """Write bytes or text to a file in tmp_path and return its path."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return path

    return _write
