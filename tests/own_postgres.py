"""A PostgreSQL server of a test's own (initdb + pg_ctl into a temporary folder, on a free
port), which the test may stop and restart without touching the shared server. PostgreSQL
refuses to run as root, so as root the commands run as the `postgres` user."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def server_binaries() -> Path | None:
    """The folder of initdb and pg_ctl (the newest installed PostgreSQL), if any."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        folder = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if folder and (Path(folder) / "initdb").exists():
            return Path(folder)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    return Path(found[-1]).parent if found else None


def _version(initdb: str) -> int:
    part = Path(initdb).parent.parent.name
    return int(part) if part.isdigit() else 0


class OwnPostgres:
    def __init__(self, binaries: Path) -> None:
        self._binaries = binaries
        # Not under pytest's temporary folders: those only their owner (root) may enter.
        folder = Path(tempfile.mkdtemp(prefix="own-postgres-"))
        self._folder = folder
        self._data = folder / "data"
        self._log = folder / "server.log"
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"
            account = pwd.getpwnam(self._user)
            os.chown(folder, account.pw_uid, account.pw_gid)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._run("initdb", "-D", str(self._data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -k {self._folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg_ctl("-o", options, "-l", str(self._log), "start")

    def restart(self) -> None:
        """A fast restart: every connection is terminated, then the server accepts again."""
        self._pg_ctl("-m", "fast", "-l", str(self._log), "restart")

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "stop")

    def remove(self) -> None:
        """Stops the server if it runs, and deletes its files."""
        self._run("pg_ctl", "-D", str(self._data), "-m", "immediate", "stop", check=False)
        shutil.rmtree(self._folder, ignore_errors=True)

    def _pg_ctl(self, *arguments: str) -> None:
        # The server's output goes to the log (-l): pipes it inherited would never close.
        self._run("pg_ctl", "-D", str(self._data), "-w", *arguments)

    def _run(self, program: str, *arguments: str, check: bool = True) -> None:
        command = [str(self._binaries / program), *arguments]
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        done = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
        )
        if check and done.returncode != 0:
            log = self._log.read_text() if self._log.exists() else ""
            raise RuntimeError(f"{' '.join(command)}: {done.stdout}{done.stderr}{log}")
