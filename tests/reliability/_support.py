"""Helpers shared by the reliability tests (a plain module, not collected)."""

from __future__ import annotations

import os
from pathlib import Path

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_ESTABLISHED = "01"  # the st column of /proc/net/tcp


def proc_available() -> bool:
    """Whether this process's sockets can be read from ``/proc`` (Linux)."""
    return Path("/proc/self/net/tcp").is_file() and Path("/proc/self/fd").is_dir()


def _own_socket_inodes() -> set[str]:
    inodes: set[str] = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed between listdir and readlink
            continue
        if target.startswith("socket:[") and target.endswith("]"):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def established_connections_to(port: int) -> int:
    """Count this process's established TCP connections whose remote port is ``port``.

    Reads ``/proc/self/net/tcp`` (and ``tcp6``), which list every socket of the network
    namespace, and keeps only the sockets this process holds open (its fds' inodes). Only
    the client ends match: the server ends of the same connections have ``port`` as
    their local port.
    """
    inodes = _own_socket_inodes()
    count = 0
    for name in ("tcp", "tcp6"):
        path = Path(f"/proc/self/net/{name}")
        if not path.is_file():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) < 10:
                continue
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[3] == _ESTABLISHED and fields[9] in inodes:
                count += 1
    return count


def rss_bytes() -> int:
    """The resident set size of this process, from ``/proc/self/statm`` (0 if unknown)."""
    try:
        fields = Path("/proc/self/statm").read_text().split()
    except OSError:
        return 0
    return int(fields[1]) * _PAGE_SIZE
