"""A dual-stack (IPv4 + IPv6) TCP server that answers every request with HTTP/1.1 200.

Runs inside the test's upstream network namespace. Prints "ready" once listening.
Usage: http_ok_server.py PORT
"""
import socket
import socketserver
import sys


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        try:
            self.request.settimeout(5)
            data = self.request.recv(65536)
            if data:
                body = b"ok\n"
                self.wfile.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                    % (len(body), body)
                )
        except OSError:
            pass


class DualStackServer(socketserver.ThreadingTCPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def main():
    port = int(sys.argv[1])
    with DualStackServer(("::", port), Handler) as server:
        print("ready", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
