"""A throwaway S3-compatible server on loopback, for the object store's tests and benchmarks.

The team mode keeps outputs in an object store (`genwidgets._store`); it is tested against a real
S3 protocol server, not a mock of the client library: moto's standalone server (moto[server] from
PyPI), run in its own process on a free loopback port, with a request counter in front::

    from genwidgets.sandbox.s3 import LocalS3

    with LocalS3() as s3:
        os.environ.update(s3.env)              # AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...
        s3.create_bucket("team")
        os.environ["GENWIDGETS_STORE"] = "s3://team/outputs"
        s3.requests()                          # {"GET": 3, "PUT": 1, "HEAD": 4}, since the start

The secret key is random per server and only in `env` (and `secret`); the repr leaves it out.
`python -m genwidgets.sandbox.s3 --port 9000` serves one in the foreground.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

__all__ = ["LocalS3", "S3Unavailable"]

#: The counter's own path (never forwarded to moto).
COUNTS_PATH = "/_genwidgets/requests"
#: Seconds the server process may take to answer (importing moto takes one or two).
START_SECONDS = 30.0

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class S3Unavailable(RuntimeError):
    """moto's server cannot run here (install moto[server]: the `test` extra does)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalS3:
    """moto's S3 server in a child process on 127.0.0.1 (see the module docstring)."""

    def __init__(self, *, region: str = "us-east-1") -> None:
        try:
            import moto.server  # noqa: F401
        except ImportError as exc:
            raise S3Unavailable(f"moto[server] is not installed ({exc})") from None
        self.host, self.port = "127.0.0.1", _free_port()
        self.region = region
        self.key_id = f"GWTEST{secrets.token_hex(6).upper()}"
        self.secret = secrets.token_urlsafe(24)
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LocalS3 {self.endpoint_url} {state}>"

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables that point boto/s3fs at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": self.region,
        }

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        command = [sys.executable, "-m", "genwidgets.sandbox.s3", "--port", str(self.port),
                   "--parent", str(os.getpid())]  # fmt: skip
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        ends = time.monotonic() + START_SECONDS
        while time.monotonic() < ends:
            if self._process.poll() is not None:
                err = (self._process.stderr.read() if self._process.stderr else b"")[-400:]
                raise S3Unavailable(f"moto's server exited: {err.decode(errors='replace')}")
            try:
                self.requests()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise S3Unavailable(f"moto's server did not answer within {START_SECONDS:.0f} s")

    def stop(self) -> None:
        """End the server (its buckets are in its memory: they go with it)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None and process.stderr is not None:
            process.stderr.close()

    def create_bucket(self, name: str) -> None:
        import boto3

        boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
            region_name=self.region,
        ).create_bucket(Bucket=name)

    def requests(self, *, reset: bool = False) -> dict[str, int]:
        """Requests the server answered since it started (or the last reset), by HTTP method."""
        url = f"{self.endpoint_url}{COUNTS_PATH}" + ("?reset=1" if reset else "")
        with urllib.request.urlopen(url, timeout=5) as response:
            return dict(json.loads(response.read()))

    def __enter__(self) -> LocalS3:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def counting(app: WSGIApp) -> WSGIApp:
    """`app` with a count of requests by method, served as JSON at `COUNTS_PATH`."""
    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == COUNTS_PATH:
            with lock:
                body = json.dumps(counts).encode()
                if "reset=1" in environ.get("QUERY_STRING", ""):
                    counts.clear()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        with lock:
            counts[environ["REQUEST_METHOD"]] += 1
        return app(environ, start_response)

    return wsgi


def _exit_with(parent: int) -> None:
    """End this server once `parent` is gone (a test or benchmark killed with SIGKILL never
    runs `stop()`: its server must not outlive it)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="moto's S3 server on loopback, counted")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--parent", type=int, default=0, help="exit when this process is gone")
    args = parser.parse_args(argv)
    if args.parent:
        threading.Thread(target=_exit_with, args=(args.parent,), daemon=True).start()
    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = counting(DomainDispatcherApplication(create_backend_app))
    server = make_server(
        args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
