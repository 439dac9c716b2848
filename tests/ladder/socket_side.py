"""One side of a kernel TCP connection, driven line by line from standard input (run
inside a test's network namespace by tests/ladder/test_kernel_states.py).

Commands: ``listen ADDR PORT``, ``accept``, ``connect ADDR PORT LOCAL_ADDR LOCAL_PORT``
(non-blocking: returns at once, the handshake goes on), ``wait_connected``, ``send N``,
``recv``, ``shutdown`` (SHUT_WR), ``close``, ``quit``. Each answers one line: ``ok``
or ``error ...``. Every blocking call has a timeout.
"""
from __future__ import annotations

import select
import socket
import sys

TIMEOUT = 20.0


def main() -> None:
    listener: socket.socket | None = None
    conn: socket.socket | None = None
    for line in sys.stdin:
        cmd, *args = line.split()
        try:
            if cmd == "listen":
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind((args[0], int(args[1])))
                listener.listen(8)
            elif cmd == "accept":
                assert listener is not None
                listener.settimeout(TIMEOUT)
                conn, _ = listener.accept()
            elif cmd == "connect":
                conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                conn.bind((args[2], int(args[3])))
                conn.setblocking(False)
                err = conn.connect_ex((args[0], int(args[1])))
                assert err in (0, 115), err                       # EINPROGRESS
            elif cmd == "wait_connected":
                assert conn is not None
                _, writable, _ = select.select([], [conn], [], TIMEOUT)
                assert writable and conn.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                conn.setblocking(True)
            elif cmd == "send":
                assert conn is not None
                conn.sendall(b"x" * int(args[0]))
            elif cmd == "recv":
                assert conn is not None
                conn.settimeout(TIMEOUT)
                conn.recv(65536)
            elif cmd == "shutdown":
                assert conn is not None
                conn.shutdown(socket.SHUT_WR)
            elif cmd == "close":
                assert conn is not None
                conn.close()
                conn = None
            elif cmd == "quit":
                print("ok", flush=True)
                return
            else:
                raise ValueError(f"unknown command {cmd}")
            print("ok", flush=True)
        except Exception as e:          # reported to the test, which fails with it
            print(f"error {type(e).__name__}: {e}", flush=True)


if __name__ == "__main__":
    main()
