"""`make test` runs a pytest-xdist worker per core (up to 4). Each worker, and every process a test starts, gets
its share of the cores as threads: otherwise N workers each run N threads on N cores, and OpenMP's spinning
threads slow every compute-bound test down. A thread count the user set is kept."""

import os

_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1 and "OMP_NUM_THREADS" not in os.environ:
    # the cores this process may run on (a container's share on Linux); macOS has no affinity call
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    os.environ["OMP_NUM_THREADS"] = str(max(1, _cores // _workers))
