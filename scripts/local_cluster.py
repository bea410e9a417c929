"""A local cluster on loopback: HAProxy in front of N `customer-segments serve` replicas, all
on one PostgreSQL database through PgBouncer in transaction mode (README "Scaling").

    .venv/bin/python scripts/local_cluster.py start [--replicas 3] [--run-dir run/cluster]
    .venv/bin/python scripts/local_cluster.py stop [--run-dir run/cluster]

`make cluster` / `make cluster-stop` run these. `start` migrates the database once, straight
to PostgreSQL (the migration's advisory lock needs a session), starts PgBouncer, the replicas
and HAProxy, each in a process group of its own with a pid file in the run directory, waits
until HAProxy sees every replica UP, and prints the ports. `stop` ends exactly the processes
whose pid files it finds there (each checked to still be the one started). Tokens:
`customer-segments token --data-dir <run dir>` signs with the cluster's secret.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from string import Template
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
HAPROXY_TEMPLATE = ROOT / "deploy" / "haproxy" / "haproxy.cfg.template"
CLI = Path(sys.executable).parent / "customer-segments"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/customer_segments_cluster"
LAYOUT_FILE = "cluster.json"
# Generous: on a busy 2-core machine a replica's start has taken over 30 s.
START_TIMEOUT_S = 120.0
# PgBouncer's connections to PostgreSQL per database and user: what the replicas' transactions
# run on at once (README "Scaling" says how to size it).
PGBOUNCER_POOL_SIZE = 20


class ClusterError(Exception):
    """The cluster could not be started or stopped as asked; the message says why."""


@dataclass(frozen=True)
class Replica:
    name: str
    grpc_port: int
    http_port: int
    metrics_port: int


@dataclass(frozen=True)
class Layout:
    """Where everything listens; kept in the run directory as cluster.json for `stop` and for
    whoever drives the cluster."""

    run_dir: Path
    # Straight to PostgreSQL: migrations, and the session-level connections (LISTEN).
    database_url: str
    pgbouncer_port: int
    grpc_port: int
    http_port: int
    stats_port: int
    replicas: tuple[Replica, ...]
    bind: str = "127.0.0.1"
    serve_args: tuple[str, ...] = field(default=())

    @property
    def pooled_url(self) -> str:
        """The database URL through PgBouncer (same user and database)."""
        parts = urlsplit(self.database_url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@{self.bind}:{self.pgbouncer_port}" if credentials else ""
        return urlunsplit(parts._replace(netloc=netloc or f"{self.bind}:{self.pgbouncer_port}"))

    @property
    def grpc_target(self) -> str:
        return f"{self.bind}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.bind}:{self.http_port}"

    @property
    def stats_socket(self) -> Path:
        return self.run_dir / "haproxy.sock"

    def replica(self, name: str) -> Replica:
        (found,) = [replica for replica in self.replicas if replica.name == name]
        return found

    def save(self) -> None:
        data = asdict(self)
        data["run_dir"] = str(self.run_dir)
        (self.run_dir / LAYOUT_FILE).write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, run_dir: Path) -> Layout:
        data = json.loads((run_dir / LAYOUT_FILE).read_text())
        data["run_dir"] = Path(data["run_dir"])
        data["replicas"] = tuple(Replica(**replica) for replica in data["replicas"])
        data["serve_args"] = tuple(data["serve_args"])
        return cls(**data)


def plan(
    run_dir: Path,
    *,
    replicas: int = 3,
    database_url: str = DEFAULT_DATABASE_URL,
    port: Callable[[], int] | None = None,
    serve_args: Sequence[str] = (),
) -> Layout:
    """A layout on free loopback ports (`port` hands them out; by default the kernel picks)."""
    take = port or _kernel_port
    return Layout(
        run_dir=run_dir.resolve(),
        database_url=database_url,
        pgbouncer_port=take(),
        grpc_port=take(),
        http_port=take(),
        stats_port=take(),
        replicas=tuple(Replica(f"r{n}", take(), take(), take()) for n in range(1, replicas + 1)),
        serve_args=tuple(serve_args),
    )


def _kernel_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def render_haproxy(
    *,
    stats_socket: str,
    bind: str,
    grpc_port: int,
    http_port: int,
    stats_port: int,
    replicas: Sequence[tuple[str, str, int, int]],
) -> str:
    """HAProxy's configuration for replicas given as (name, host, gRPC port, REST port)."""
    grpc = [
        f"    server {name} {host}:{grpc} proto h2 check port {http} check-proto h1"
        for name, host, grpc, http in replicas
    ]
    rest = [f"    server {name} {host}:{http} check" for name, host, _, http in replicas]
    return Template(HAPROXY_TEMPLATE.read_text()).substitute(
        stats_socket=stats_socket,
        bind=bind,
        grpc_port=grpc_port,
        http_port=http_port,
        stats_port=stats_port,
        grpc_servers="\n".join(grpc),
        rest_servers="\n".join(rest),
    )


def require_tools() -> None:
    missing = [tool for tool in ("haproxy", "pgbouncer") if _tool(tool) is None]
    if missing:
        raise ClusterError(
            f"{' and '.join(missing)} not installed: make cluster-tools (as root) installs them"
        )


def _tool(name: str) -> str | None:
    # Debian puts both in /usr/sbin, which a user's PATH may lack.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


class Cluster:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.run_dir = layout.run_dir
        # What this object started (stop() also ends what another process started here).
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    # Start ----------------------------------------------------------------------------------

    def start(self) -> None:
        require_tools()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if any(self.pid(path.stem) for path in self._pid_files()):
            raise ClusterError(f"a cluster already runs from {self.run_dir}: stop it first")
        self.layout.save()
        secret = self.run_dir / "jwt-secret"
        if not secret.exists():
            secret.write_text(secrets.token_urlsafe(32) + "\n")
            secret.chmod(0o600)
        try:
            asyncio.run(_create_database(self.layout.database_url))
            self._migrate()
            self._start_pgbouncer()
            for replica in self.layout.replicas:
                self.start_replica(replica.name)
            for replica in self.layout.replicas:
                self.wait_ready(replica.name)
            self._start_haproxy()
            self.wait_for_states({r.name: "UP" for r in self.layout.replicas})
        except BaseException:
            self.stop()
            raise

    def _migrate(self) -> None:
        done = subprocess.run(
            [str(CLI), "migrate", "--database-url", self.layout.database_url],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )
        if done.returncode != 0:
            raise ClusterError(f"migrate failed: {done.stderr.strip()}")

    def _start_pgbouncer(self) -> None:
        parts = urlsplit(self.layout.database_url)
        user = parts.username or "postgres"
        database = parts.path.lstrip("/")
        users = self.run_dir / "pgbouncer-users.txt"
        users.write_text(f'"{user}" ""\n')
        config = self.run_dir / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"{database} = host={parts.hostname} port={parts.port or 5432} dbname={database}\n"
            "[pgbouncer]\n"
            f"listen_addr = {self.layout.bind}\n"
            f"listen_port = {self.layout.pgbouncer_port}\n"
            "unix_socket_dir =\n"
            # Loopback and the database's own user, as the system PostgreSQL trusts them.
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {PGBOUNCER_POOL_SIZE}\n"
            "max_client_conn = 1000\n"
        )
        argv = [_tool("pgbouncer") or "pgbouncer"]
        if os.geteuid() == 0:
            # PgBouncer refuses to run as root; it reads its files first, then switches.
            argv += ["-u", "nobody"]
        self._spawn("pgbouncer", [*argv, str(config)])
        self._wait(lambda: _accepts(self.layout.bind, self.layout.pgbouncer_port), "pgbouncer")

    def start_replica(self, name: str) -> None:
        replica = self.layout.replica(name)
        self._spawn(
            name,
            [
                str(CLI),
                "serve",
                "--grpc-host",
                self.layout.bind,
                "--grpc-port",
                str(replica.grpc_port),
                "--http-host",
                self.layout.bind,
                "--http-port",
                str(replica.http_port),
                "--metrics-port",
                str(replica.metrics_port),
                "--data-dir",
                str(self.run_dir / name),
                "--database-url",
                self.layout.pooled_url,
                "--database-listen-url",
                self.layout.database_url,
                # PgBouncer in transaction mode: no statement may outlive its transaction.
                "--pg-statement-cache-size",
                "0",
                *self.layout.serve_args,
            ],
            env={"CUSTOMER_SEGMENTS_JWT_SECRET_FILE": str(self.run_dir / "jwt-secret")},
        )

    def wait_ready(self, name: str) -> None:
        port = self.layout.replica(name).http_port
        self._wait(lambda: _ready(self.layout.bind, port), f"{name}'s /readyz", name)

    def _start_haproxy(self) -> None:
        config = self.run_dir / "haproxy.cfg"
        config.write_text(
            render_haproxy(
                stats_socket=str(self.layout.stats_socket),
                bind=self.layout.bind,
                grpc_port=self.layout.grpc_port,
                http_port=self.layout.http_port,
                stats_port=self.layout.stats_port,
                replicas=[
                    (r.name, self.layout.bind, r.grpc_port, r.http_port)
                    for r in self.layout.replicas
                ],
            )
        )
        haproxy = _tool("haproxy") or "haproxy"
        checked = subprocess.run(
            [haproxy, "-c", "-q", "-f", str(config)], capture_output=True, text=True, timeout=30
        )
        if checked.returncode != 0:
            raise ClusterError(f"haproxy refused {config}: {checked.stdout}{checked.stderr}")
        self.layout.stats_socket.unlink(missing_ok=True)  # one of an earlier run
        # -db: in the foreground, so that its pid is the one in the pid file.
        self._spawn("haproxy", [haproxy, "-db", "-f", str(config)])
        self._wait(lambda: self.layout.stats_socket.exists(), "haproxy's stats socket", "haproxy")

    # Processes ------------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        with (self.run_dir / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=self.run_dir,
                # A group of its own (serve's gateway and workers with it), ended as one.
                start_new_session=True,
            )
        (self.run_dir / f"{name}.pid").write_text(f"{process.pid}\n")
        self.processes[name] = process

    def _pid_files(self) -> list[Path]:
        return sorted(self.run_dir.glob("*.pid")) if self.run_dir.exists() else []

    def pid(self, name: str) -> int | None:
        """The pid of a process this cluster started, if it still runs."""
        process = self.processes.get(name)
        if process is not None:
            return process.pid if process.poll() is None else None
        path = self.run_dir / f"{name}.pid"
        if not path.exists():
            return None
        pid = int(path.read_text())
        return pid if self._ours(pid) else None

    def _ours(self, pid: int) -> bool:
        """Still the process started here: its pid was not reused by another program. Every
        command line started here names a file or folder in the run directory."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        return state != "Z" and str(self.run_dir).encode() in cmdline

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signals a process group this cluster started (kill -9 by default) and forgets it."""
        pid = self.pid(name)
        if pid is not None:
            _signal_group(pid, sig)
            _wait_gone(pid)
        (self.run_dir / f"{name}.pid").unlink(missing_ok=True)

    def stop(self) -> list[str]:
        """Ends what start() started: HAProxy, then the replicas together, then PgBouncer;
        the names of what was still running."""
        ended: list[str] = []
        stages = [["haproxy"], [r.name for r in self.layout.replicas], ["pgbouncer"]]
        known = {name for stage in stages for name in stage}
        # A replica of an earlier layout in the same folder is ended with the replicas.
        stages[1] += [p.stem for p in self._pid_files() if p.stem not in known]
        for stage in stages:
            running = {name: pid for name in stage if (pid := self.pid(name)) is not None}
            for pid in running.values():
                _signal_group(pid, signal.SIGTERM)
            for pid in running.values():
                if not _wait_gone(pid, timeout=20):
                    _signal_group(pid, signal.SIGKILL)
                    _wait_gone(pid)
            ended += running
            for name in stage:
                (self.run_dir / f"{name}.pid").unlink(missing_ok=True)
        return ended

    def _wait(self, ready: Callable[[], bool], what: str, name: str | None = None) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if ready():
                return
            if name is not None and self.pid(name) is None:
                process = self.processes.get(name)
                status = "" if process is None else f" (exit status {process.poll()})"
                raise ClusterError(
                    f"{name} exited{status} while waiting for {what}:\n{self.tail(name)}"
                )
            time.sleep(0.1)
        raise ClusterError(f"timed out waiting for {what}")

    def tail(self, name: str, lines: int = 30) -> str:
        log = self.run_dir / f"{name}.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    # HAProxy's view -------------------------------------------------------------------------

    def haproxy_command(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX) as connection:
            connection.settimeout(10)
            connection.connect(str(self.layout.stats_socket))
            connection.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def server_states(self, backend: str = "grpc") -> dict[str, str]:
        """Replica name -> HAProxy's status of it in `backend` (UP, DOWN, "DOWN 1/2", ...)."""
        rows = csv.DictReader(self.haproxy_command("show stat").removeprefix("# ").splitlines())
        return {
            row["svname"]: row["status"]
            for row in rows
            if row["pxname"] == backend and row["svname"] not in ("FRONTEND", "BACKEND")
        }

    def wait_for_states(
        self, wanted: dict[str, str], timeout: float = START_TIMEOUT_S
    ) -> dict[str, str]:
        """Polls until HAProxy shows the replicas in both backends as wanted."""
        deadline = time.monotonic() + timeout
        while True:
            states = {backend: self.server_states(backend) for backend in ("grpc", "rest")}
            if all(
                states[backend].get(name) == status
                for backend in states
                for name, status in wanted.items()
            ):
                return states["grpc"]
            if time.monotonic() > deadline:
                raise ClusterError(f"HAProxy shows {states}, not {wanted}")
            time.sleep(0.1)

    def describe(self) -> str:
        layout = self.layout
        lines = [
            f"gRPC (HAProxy, HTTP/2 per call)  {layout.grpc_target}",
            f"REST (HAProxy)                   {layout.http_url}",
            f"HAProxy stats                    http://{layout.bind}:{layout.stats_port}/stats",
            f"PgBouncer (transaction mode)     {layout.pooled_url}",
            f"PostgreSQL (direct: migrate, LISTEN) {layout.database_url}",
        ]
        for replica in layout.replicas:
            lines.append(
                f"replica {replica.name}: gRPC {replica.grpc_port}, REST {replica.http_port}, "
                f"metrics {replica.metrics_port}"
            )
        lines.append(
            f"token: {CLI} token --data-dir {layout.run_dir} --tenant acme "
            '--scope "customersegment.segment_read customersegment.segment_manage"'
        )
        lines.append(f"logs and pid files: {layout.run_dir}")
        return "\n".join(lines)


def _accepts(host: str, port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) == 0


def _ready(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _wait_gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] == "Z":
                _reap(pid)
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def _reap(pid: int) -> None:
    """A child of this process (a test's kill) is waited for; another's is its parent's."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


async def _create_database(url: str) -> None:
    """Creates the cluster's database when it does not exist yet."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    connection = await asyncpg.connect(admin, timeout=10)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("start", "stop"))
    parser.add_argument("--run-dir", type=Path, default=ROOT / "run" / "cluster")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("CLUSTER_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="PostgreSQL, direct (env CLUSTER_DATABASE_URL); created if missing",
    )
    arguments = parser.parse_args(argv)
    try:
        if arguments.command == "stop":
            if not (arguments.run_dir / LAYOUT_FILE).exists():
                print(f"no cluster in {arguments.run_dir}")
                return 0
            ended = Cluster(Layout.load(arguments.run_dir.resolve())).stop()
            print(f"stopped: {', '.join(ended) or 'nothing was running'}")
            return 0
        cluster = Cluster(
            plan(
                arguments.run_dir,
                replicas=arguments.replicas,
                database_url=arguments.database_url,
            )
        )
        cluster.start()
        print(cluster.describe())
        return 0
    except ClusterError as error:
        print(f"cluster: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
