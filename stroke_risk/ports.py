"""Free TCP ports for servers started on this machine (tests, benchmarks, demos).

One helper so every caller probes the same way: bind port 0 on the given address and read
back the port the kernel chose. The port is free when probed, not reserved: start the
server right after asking, and retry on "address in use" where a collision would matter.
"""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on host (the loopback interface by default) right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def free_port_on(addresses: tuple[str, ...], attempts: int = 50) -> int:
    """Return a port free on every one of these addresses (e.g. two loopback addresses).

    Raises RuntimeError when no common port turned up in `attempts` tries.
    """
    for _ in range(attempts):
        port = free_port(addresses[0])
        try:
            for address in addresses[1:]:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
                    other.bind((address, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no port free on all of {', '.join(addresses)} in {attempts} tries")
