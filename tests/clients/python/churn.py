"""Process churn for the end-to-end tests: forks short-lived children, one after another; each
connects to the upstream and sends one request (over TLS for every K-th child), then exits.

Usage: churn.py HOST PORT TLS_PORT CA K
Each line read on stdin is a round: the number of children to fork. After each round it prints
"done N failed F". It ends at end of input.
"""
import os
import socket
import ssl
import sys

host, port, tls_port, ca, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
ctx = ssl.create_default_context(cafile=ca)
request = b"GET /churn HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n"


def child(i):
    if k and i % k == 0:
        with socket.create_connection((host, tls_port), timeout=10) as s:
            with ctx.wrap_socket(s, server_hostname="api.test") as t:
                t.sendall(request)
                t.recv(100)
    else:
        with socket.create_connection((host, port), timeout=10) as s:
            s.sendall(request)
            s.recv(100)


for line in sys.stdin:
    n = int(line)
    failed = 0
    for i in range(n):
        pid = os.fork()
        if pid == 0:
            try:
                child(i)
                os._exit(0)
            except Exception:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        failed += os.waitstatus_to_exitcode(status) != 0
    print("done", n, "failed", failed, flush=True)
