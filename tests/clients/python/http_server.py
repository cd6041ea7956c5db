"""A dual-stack (IPv4 + IPv6) HTTP/1.1 server for the end-to-end tests: every request (any
method, any path, with or without a body) gets 200 "ok", keep-alive. With --tls CERT KEY it
serves HTTPS. Runs inside the test's upstream network namespace; prints "ready" once listening.

Usage: http_server.py [--tls CERT KEY] PORT
"""
import http.server
import socket
import socketserver
import ssl
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _answer

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True
    context = None

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.context is not None:
            # Handshake in the handler thread, so one bad client cannot stall the accept loop.
            sock = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address):
        pass


def main():
    args = sys.argv[1:]
    context = None
    if args[0] == "--tls":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args[1], args[2])
        args = args[3:]
    server = Server(("::", int(args[0])), Handler)
    server.context = context
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
