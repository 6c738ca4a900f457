"""A throwaway PostgreSQL server for the tests: Debian's `postgresql` package (`.ci/run`
installs it where it is missing and runs as root), a cluster made with `initdb` in a
temporary folder, listening on 127.0.0.1 and a free port only, removed at the end.

`initdb` and the server refuse to run as root: as root they run as the `postgres` user the
package creates. Connections over TCP take a password (scram-sha-256), so the URLs the tests
give dlcli carry one, as a team's would.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

USER, PASSWORD = "dlcli", "pg-secret-4821"


def binaries() -> Path | None:
    """The folder of `initdb` and `pg_ctl`: on PATH, else Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    folder: Path
    port: int
    bin: Path
    as_user: list[str]

    def url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> str:
        done = subprocess.run(
            [
                *self.as_user,
                str(self.bin / "psql"),
                "-h",
                str(self.folder),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-tAc",
                statement,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def create_database(self, name: str) -> str:
        self.sql(f"CREATE DATABASE {name} OWNER {USER}")
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            [
                *self.as_user,
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.folder / "data"),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
            check=False,
            timeout=60,
        )
        shutil.rmtree(self.folder, ignore_errors=True)


def start() -> Server:
    """Make and start a cluster; a Server, or AssertionError naming what failed."""
    bin_dir = binaries()
    assert bin_dir is not None, (
        "PostgreSQL is not installed: apt-get install postgresql (.ci/run does it as root)"
    )
    folder = Path(tempfile.mkdtemp(prefix="dlcli-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse root
        import pwd

        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    (folder / "password").write_text(PASSWORD + "\n")
    if as_user:
        os.chown(folder / "password", pwd.getpwnam("postgres").pw_uid, -1)
    made = subprocess.run(
        [
            *as_user,
            str(bin_dir / "initdb"),
            "-D",
            str(folder / "data"),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--pwfile",
            str(folder / "password"),
            "-E",
            "UTF8",
            "--locale=C",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    port = free_port()
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    started = subprocess.run(
        [
            *as_user,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(folder / "data"),
            "-l",
            str(folder / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "120",
            "start",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    log = folder / "server.log"
    assert started.returncode == 0, started.stderr + (log.read_text() if log.exists() else "")
    server = Server(folder, port, bin_dir, as_user)
    deadline = time.time() + 60
    while True:
        with contextlib.suppress(AssertionError):
            server.sql(f"CREATE USER {USER} PASSWORD '{PASSWORD}'")
            return server
        assert time.time() < deadline, "the PostgreSQL server did not take connections"
        time.sleep(0.5)
