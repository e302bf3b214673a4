"""Sift's production processes for reliability stories and load benchmarks: gunicorn serving
the app, and a private redis-server that a story may kill and restart.

Nothing here imports Django, so bench/ scripts use it too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http_session() -> requests.Session:
    """A keep-alive HTTP client that resends a request whose pooled connection was closed.

    gunicorn closes idle keep-alive connections after a couple of seconds; a request sent on
    one at that moment is reset before the server reads it, and browsers simply send it again.
    Answers carry client ids, so even a resent answer the server did read is stored once.
    """
    session = requests.Session()
    # Only lost connections: every answer the server gives (a 503 included) reaches the caller.
    retry = Retry(
        total=3,
        connect=3,
        read=3,
        status=0,
        allowed_methods=None,
        backoff_factor=0.1,
        respect_retry_after_header=False,
        raise_on_status=False,
    )
    session.mount("http://", HTTPAdapter(max_retries=retry))
    return session


def wait_for(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    """Return once `condition()` holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(poll)
    raise AssertionError(f"Timed out after {timeout:.0f} s waiting for {what}")


def stop(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Ask a process to end, and kill it if it has not after `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def _running(
    command: list[str],
    env: Mapping[str, str],
    log_path: Path,
    ready: Callable[[subprocess.Popen[bytes]], bool],
    *,
    timeout: float,
    what: str,
    stop_timeout: float = 20,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `command` in the repository, its output to `log_path`; stop it afterwards."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_for(lambda: ready(process), timeout, what)
            yield process
        finally:
            stop(process, timeout=stop_timeout)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class RedisServer:
    """A redis-server of our own on a free port, without persistence, like a cache box."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._accepts_connections, 10, f"redis-server on port {self.port}")

    def kill(self) -> None:
        """SIGKILL: the broker vanishes with everything it held, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def _accepts_connections(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@contextmanager
def running_redis(log_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(log_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@contextmanager
def running_gunicorn(
    env: Mapping[str, str],
    log_path: Path,
    *,
    workers: int = 2,
    threads: int = 8,
    access_log: bool = True,
) -> Iterator[str]:
    """Serve config.wsgi with gunicorn as production does; yields the base URL.

    `env` must name at least DATABASE_URL and SECRET_KEY. Cookies are not marked Secure, so a
    plain-http client on 127.0.0.1 sends them back.
    """
    port = free_port()
    process_env = {
        **os.environ,
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SIFT_SECURE_COOKIES": "false",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        **env,
    }
    process_env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    command = [
        *(sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}"),
        *("--workers", str(workers), "--threads", str(threads), "--timeout", "120"),
        *(["--access-logfile", "-"] if access_log else []),
    ]
    base_url = f"http://127.0.0.1:{port}"
    with _running(
        command,
        process_env,
        log_path,
        lambda process: process.poll() is None and _answers(f"{base_url}/health/"),
        timeout=60,
        what="gunicorn to answer /health/",
    ):
        yield base_url


@contextmanager
def running_celery_worker(
    env: Mapping[str, str],
    log_path: Path,
    *,
    options: Sequence[str] = (),
    timeout: float = 60,
    stop_timeout: float = 20,
) -> Iterator[subprocess.Popen[bytes]]:
    """`celery -A config worker` with one pool process, as production starts it.

    `env` must name at least DATABASE_URL, REDIS_URL and SECRET_KEY; `options` go on its
    command line (a node name, `-Q` queues). Yields once the worker says it is ready.
    """
    command = [
        *(sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel=info"),
        *("--concurrency=1", "--without-gossip", "--without-mingle", *options),
    ]
    with _running(
        command,
        {**os.environ, "DEBUG": "0", **env},
        log_path,
        lambda _: b" ready." in log_path.read_bytes(),
        timeout=timeout,
        what="the worker to start",
        stop_timeout=stop_timeout,
    ) as process:
        yield process


def children_of(pid: int) -> list[int]:
    """The direct child processes of `pid` (Linux)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split()
        found.extend(int(child) for child in children)
    return found


def kill_with_children(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process and its children at once, so none of them can clean up.

    The parent is stopped first: a Celery master that saw its pool child die would requeue the
    task itself, which is not what a machine that loses power does.
    """
    os.kill(process.pid, signal.SIGSTOP)
    for child in children_of(process.pid):
        os.kill(child, signal.SIGKILL)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
