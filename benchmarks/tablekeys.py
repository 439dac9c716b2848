"""Random flow keys for the table benchmarks (IPv4 clients of one server, like a busy
front end)."""
import numpy as np

import fasttcp


def random_keys(n: int, seed: int = 0) -> np.ndarray:
    """n distinct-with-high-probability KEY_DTYPE keys (IPv4)."""
    rng = np.random.default_rng(seed)
    keys = np.zeros(n, dtype=fasttcp.KEY_DTYPE)
    keys["family"] = 4
    keys["lport"] = 443
    keys["rport"] = rng.integers(1024, 65536, n)
    keys["laddr"][:, :4] = (198, 19, 0, 1)
    keys["raddr"][:, :4] = rng.integers(0, 256, (n, 4))
    return keys
