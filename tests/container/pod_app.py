"""The app container of the pod test (run as ``python -c <this file>``, stdlib only): answers
every GET with 200 JSON on 127.0.0.1:8080, and on SIGTERM stops serving and exits 0."""

import http.server
import signal
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 8080), Handler)


def stop(signum: int, frame: object) -> None:
    print("app: SIGTERM, stopping", flush=True)
    threading.Thread(target=server.shutdown).start()  # shutdown() waits for serve_forever to return


signal.signal(signal.SIGTERM, stop)
print("app: listening on 127.0.0.1:8080", flush=True)
server.serve_forever()
print("app: stopped", flush=True)
