"""The Dask client of a run: given, the default one, or a cluster named by a
scheduler string (``tcp://HOST:PORT`` or ``local:N``). Dask is imported here, lazily:
``import fasttcp`` does not need it."""
from __future__ import annotations

import re
from typing import Any

from fasttcp.errors import UsageError

__all__ = ["require_distributed", "connect", "MAX_LOCAL_WORKERS"]

#: worker processes `local:N` starts at most: more than any one machine has cores
MAX_LOCAL_WORKERS = 1024
_TCP = re.compile(r"^(tcp|tls)://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")
_LOCAL = re.compile(r"^local:([0-9]{1,7})$")


def require_distributed() -> Any:
    """The `distributed` module; ImportError naming the extra to install without it."""
    try:
        import distributed
    except ImportError as e:
        raise ImportError("fasttcp.distributed needs Dask distributed: pip install 'fasttcp[distributed]'") from e
    return distributed


def check_scheduler(scheduler: str) -> tuple[str, int | str]:
    """``("local", N)`` or ``("tcp", address)``; UsageError for anything else."""
    if not isinstance(scheduler, str):
        raise UsageError(f"scheduler must be a string, tcp://HOST:PORT or local:N, got {scheduler!r}")
    m = _LOCAL.match(scheduler)
    if m:
        n = int(m.group(1))
        if not 1 <= n <= MAX_LOCAL_WORKERS:
            raise UsageError(f"local:N needs 1 <= N <= {MAX_LOCAL_WORKERS} worker processes, got {n}")
        return "local", n
    m = _TCP.match(scheduler)
    if m and 1 <= int(m.group(3)) <= 65535:
        return "tcp", scheduler
    raise UsageError(f"scheduler must be tcp://HOST:PORT (port 1..65535) or local:N, got {scheduler!r}")


def connect(scheduler: str, *, timeout: float = 30.0) -> tuple[Any, Any]:
    """(client, cluster): a client of the scheduler at ``tcp://HOST:PORT``, or of a
    new `LocalCluster` of N single-threaded worker processes for ``local:N`` (the
    cluster is None for a remote scheduler; the caller closes both)."""
    kind, arg = check_scheduler(scheduler)
    distributed = require_distributed()
    if kind == "tcp":
        return distributed.Client(arg, timeout=timeout), None
    cluster = distributed.LocalCluster(n_workers=int(arg), threads_per_worker=1, processes=True,
                                       dashboard_address=":0")
    try:
        return distributed.Client(cluster, timeout=timeout), cluster
    except BaseException:
        cluster.close()
        raise
