"""What the benchmark scripts share: paths, the benchmark database, the machine's
description, the command-line options they have in common, the gunicorn server, wrk runs
and their parsing, and the statistics of repeated rounds.

Every figure the benchmarks report is a ratio between two measurements taken in the same
run (this machine is shared and noisy); absolute numbers are context only.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
LUA_DIR = BENCH_DIR / "lua"
VENV_BIN = Path(sys.executable).parent

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/orders_bench"


def database_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)


def database_name() -> str:
    return database_url().rsplit("/", 1)[1].split("?")[0]


def django_env(**extra: str) -> dict[str, str]:
    """Environment for a process running the bench project (gunicorn, manage commands)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(BENCH_DIR), str(REPO_DIR), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    env["DJANGO_SETTINGS_MODULE"] = "benchproject.settings"
    env["BENCH_DATABASE_URL"] = database_url()
    env.update(extra)
    return env


def setup_django() -> None:
    """Configure Django in this process, for seeding and for in-process relay runs."""
    for path in (str(REPO_DIR), str(BENCH_DIR)):
        if path not in sys.path:
            sys.path.insert(0, path)
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchproject.settings"
    os.environ.setdefault("BENCH_DATABASE_URL", database_url())
    import django

    django.setup()


def ensure_database() -> None:
    """Create the benchmark database if missing and apply the migrations."""
    import psycopg2

    admin_url = database_url().rsplit("/", 1)[0] + "/postgres"
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database_name()])
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{database_name()}"')
    conn.close()
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--verbosity", "0"],
        env=django_env(),
        check=True,
        cwd=REPO_DIR,
    )


def psql(sql: str) -> str:
    """Run SQL in the benchmark database with psql; returns its unaligned output."""
    out = subprocess.run(
        ["psql", database_url(), "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def _tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "n/a"


def machine() -> dict[str, Any]:
    """What ran the benchmark (and the command that ran it), for the report."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    import django
    import rest_framework

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO_DIR
    ).stdout.strip()
    return {
        "command": f"python bench/{Path(sys.argv[0]).name} " + " ".join(sys.argv[1:]),
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(mem_gib, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "drf": rest_framework.VERSION,
        "postgres": psql("SHOW server_version"),
        "wrk": _tool_version(["wrk", "-v"]),
        "loadavg_start": os.getloadavg(),
        "git_commit": commit,
    }


def arg_parser(doc: str | None) -> argparse.ArgumentParser:
    """A bench script's command line: its docstring as the help, and ``--rounds``."""
    p = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds; medians are reported [3]")
    return p


def api_arg_parser(
    doc: str | None, *, port: int | None, port_help: str = ""
) -> argparse.ArgumentParser:
    """:func:`arg_parser` with the options of the scripts that serve the bench project
    (a :class:`GunicornServer`: ``--port``, unless ``port`` is None because the script
    picks free ports, and gunicorn's worker model) and drive it with wrk
    (:func:`measure_wrk`)."""
    p = arg_parser(doc)
    p.add_argument("--duration", type=float, default=10, help="seconds per wrk run [10]")
    p.add_argument("--connections", type=int, default=8, help="wrk connections [8]")
    p.add_argument("--wrk-cpu", default=None, help="pin wrk with taskset -c (e.g. 1)")
    if port is not None:
        p.add_argument("--port", type=int, default=port, help=port_help or f"[{port}]")
    p.add_argument("--worker-class", default="gthread", help="gunicorn worker class [gthread]")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers [2]")
    p.add_argument("--threads", type=int, default=4, help="threads per gthread worker [4]")
    return p


def start_run(args: argparse.Namespace) -> dict[str, Any]:
    """The start of a run that works in this process too (the relay benchmarks): results/
    exists, the database is migrated, Django is set up. Returns the run's results so far:
    the machine and the arguments."""
    RESULTS_DIR.mkdir(exist_ok=True)
    ensure_database()
    setup_django()
    return {"machine": machine(), "args": vars(args)}


def free_port() -> int:
    """A TCP port nothing listens on now, on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except (urllib.error.URLError, ConnectionError, OSError):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up within {timeout}s") from None
            time.sleep(0.2)


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM the process (and its process group if it leads one), then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class GunicornServer:
    """The bench project served by gunicorn: ``start()``, then ``stop()``. ``--workers``
    worker processes of ``--threads`` threads each (:func:`api_arg_parser`), and each of
    them a gunicorn of its own (``--workers 1``) on a port of its own, in its own process
    group: ``urls`` has one address per worker process, ``url`` the first (for requests
    that any worker may answer). :func:`run_wrk` gives every address the same number of
    wrk's connections.

    Why not one gunicorn with N workers: its workers accept from one shared socket, and
    the one awake when wrk connects takes what comes, so wrk's 8 persistent connections
    landed 4/4, 5/3, 7/1 or all 8 on one worker by chance, and one worker serving all of
    them halves the rate and raises the CPU per request (one process, one interpreter
    lock). ``--reuse-port`` (gunicorn 27 gives each worker its own socket) leaves the
    spread to the kernel's hash of the connections' ports: 4/4 in 3 runs of 12.
    ``gunicorn``, ``env`` and ``cwd`` serve another checkout (by default this one, with
    :func:`django_env` as it is when the server starts); ``port`` is the first worker's
    (the others take free ports)."""

    def __init__(
        self,
        args: argparse.Namespace,
        *,
        port: int | None = None,
        log_name: str = "gunicorn",
        gunicorn: Path = VENV_BIN / "gunicorn",
        env: dict[str, str] | None = None,
        cwd: Path = REPO_DIR,
    ) -> None:
        self.args = args
        first = args.port if port is None else port
        self.ports = [first] + [free_port() for _ in range(args.workers - 1)]
        self.urls = [f"http://127.0.0.1:{p}" for p in self.ports]
        self.url = self.urls[0]
        self.log_path = RESULTS_DIR / f"{log_name}.log"
        self.gunicorn, self.env, self.cwd = gunicorn, env, cwd
        self.procs: list[subprocess.Popen] = []

    @property
    def pids(self) -> list[int]:
        """The gunicorn masters' pids (each the parent of one worker process)."""
        return [proc.pid for proc in self.procs]

    def start(self) -> None:
        a = self.args
        RESULTS_DIR.mkdir(exist_ok=True)
        self.log = open(self.log_path, "ab")  # noqa: SIM115
        for port in self.ports:
            cmd = [
                str(self.gunicorn),
                "benchproject.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--worker-class",
                a.worker_class,
                "--workers",
                "1",
                "--keep-alive",
                "30",
                "--backlog",
                "2048",
                "--log-level",
                "warning",
            ]
            if a.worker_class == "gthread":
                cmd += ["--threads", str(a.threads)]
            self.procs.append(
                subprocess.Popen(
                    cmd,
                    env=self.env or django_env(),
                    cwd=self.cwd,
                    stdout=self.log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        for url in self.urls:
            wait_http(url + "/ref/noop")

    def worker_connections(self) -> list[int]:
        """Established TCP connections each worker process holds on its port now (from
        /proc), in the order of ``urls``: what :func:`measure_wrk` records mid-run to show
        that wrk's connections were split evenly."""
        counts = []
        for port, master in zip(self.ports, self.pids, strict=True):
            inodes = _established_inodes(port)
            held = 0
            for pid, ppid, _, _ in _proc_stats():
                if ppid == master:
                    held += len(_socket_inodes(pid) & inodes)
            counts.append(held)
        return counts

    def stop(self) -> None:
        for proc in self.procs:
            stop_process(proc)
        if self.procs:
            self.log.close()


def _established_inodes(port: int) -> set[str]:
    """Socket inodes of the established TCP connections whose local port is ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "01":  # 01: ESTABLISHED
                    inodes.add(fields[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets a process has open."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def run_wrk(
    url: str | Sequence[str],
    script: str,
    *,
    duration: float,
    connections: int,
    threads: int = 1,
    env: dict[str, str] | None = None,
    cpu: str | None = None,
) -> dict[str, Any]:
    """Run wrk with one of the Lua scripts; return its BENCH_JSON line as a dict, plus
    the CPU seconds wrk itself used (the load generator must not eat the server's CPU).

    ``url`` may be several addresses (a :class:`GunicornServer`'s ``urls``): then wrk runs
    one thread per address, each thread's connections (wrk gives every thread
    ``connections / threads``) on its own address (``BENCH_HOSTS``, which
    ``lua/common.lua``'s ``setup()`` reads), so every address gets the same number of
    connections; ``threads`` is then the number of addresses."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    urls = [url] if isinstance(url, str) else list(url)
    hosts = {}
    if len(urls) > 1:
        if connections % len(urls):
            raise ValueError(f"{connections} connections do not split evenly over {urls}")
        threads = len(urls)
        hosts["BENCH_HOSTS"] = " ".join(u.split("://", 1)[1].rstrip("/") for u in urls)
    seconds = max(1, round(duration))
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA_DIR / script),
        urls[0],
    ]
    if cpu:
        cmd = ["taskset", "-c", cpu, *cmd]
    full_env = dict(os.environ)
    full_env["BENCH_THREADS"] = str(threads)
    full_env.update(hosts)
    full_env.update(env or {})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=duration + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result = json.loads(line[len("BENCH_JSON ") :])
            break
    else:
        raise RuntimeError(f"wrk gave no result:\n{out.stdout}\n{out.stderr}")
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["wrk_cpu_share"] = round(cpu_s / max(result["duration_s"], 1e-9), 3)
    result["errors"] = sum(
        result[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout")
    )
    return result


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int | str) -> tuple[int, str, float] | None:
    """(ppid, comm, cpu seconds: user + system, every thread) of a process, from
    /proc/<pid>/stat; None when it is gone or unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), comm, (int(fields[11]) + int(fields[12])) / _CLK_TCK


def process_cpu(pid: int) -> float | None:
    """CPU seconds a process has used so far (all its threads); None when it is gone."""
    stat = _proc_stat(pid)
    return None if stat is None else stat[2]


def _proc_stats() -> list[tuple[int, int, str, float]]:
    """(pid, ppid, comm, cpu seconds) of every process we can read."""
    rows = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(entry.name)) is not None:
            rows.append((int(entry.name), *stat))
    return rows


def cpu_snapshot(server_pids: list[int]) -> dict[str, float]:
    """CPU seconds used so far by the server's process trees (each gunicorn master and its
    worker) and by PostgreSQL processes (all of them: other users of the same PostgreSQL
    show up here too)."""
    rows = _proc_stats()
    children: dict[int, list[int]] = {}
    for pid, ppid, _, _ in rows:
        children.setdefault(ppid, []).append(pid)
    tree, todo = set(), list(server_pids)
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(children.get(pid, []))
    return {
        "server": sum(cpu for pid, _, _, cpu in rows if pid in tree),
        "postgres": sum(cpu for _, _, comm, cpu in rows if comm.startswith("postgres")),
    }


def measure_wrk(
    server: GunicornServer,
    script: str,
    args: argparse.Namespace,
    *,
    env: dict[str, str] | Callable[[], dict[str, str]] | None = None,
    duration: float | None = None,
) -> dict[str, Any]:
    """:func:`run_wrk` against ``server`` with :func:`api_arg_parser`'s options (and
    ``duration`` instead of ``--duration``; ``env`` may be a function that makes it),
    plus the CPU time the server's processes and PostgreSQL used per request
    (``server_cpu_ms_per_req``, ``postgres_cpu_ms_per_req``), and the connections each
    worker process held halfway through (``connections_per_worker``, one count per
    address of ``server.urls``)."""
    seconds = args.duration if duration is None else duration
    held: list[list[int]] = []
    probe = threading.Timer(seconds / 2, lambda: held.append(server.worker_connections()))
    before = cpu_snapshot(server.pids)
    probe.start()
    res = run_wrk(
        server.urls,
        script,
        duration=seconds,
        connections=args.connections,
        env=env() if callable(env) else env,
        cpu=args.wrk_cpu,
    )
    after = cpu_snapshot(server.pids)
    probe.cancel()
    probe.join()
    res["connections_per_worker"] = held[0] if held else None
    for part in ("server", "postgres"):
        used = after[part] - before[part]
        res[f"{part}_cpu_ms_per_req"] = used * 1000 / max(res["requests"], 1)
    return res


def median(values: list[float]) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def save_results(kind: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{kind}-{stamp}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    latest = RESULTS_DIR / f"{kind}-latest.json"
    latest.write_text(json.dumps(data, indent=2, default=str))
    return path


def finish_run(
    kind: str,
    results: dict[str, Any],
    summarize: Callable[[dict[str, Any]], dict[str, Any]],
    render: Callable[[dict[str, Any]], str],
) -> Path:
    """End a run: load average at the end, summary, JSON and Markdown results (also as
    ``<kind>-latest``), the Markdown printed. Returns the JSON's path."""
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["summary"] = summarize(results)
    path = save_results(kind, results)
    md = render(results)
    (RESULTS_DIR / f"{kind}-latest.md").write_text(md)
    print(md)
    print("results:", path)
    return path


def run_header(m: dict[str, Any], *extra: str) -> str:
    """The first line of a run's Markdown: command, time, commit, machine, load."""
    return (
        f"Run: `{m['command']}` — {m['date_utc']}, commit {m['git_commit']}, "
        f"{m['cpus']} CPUs ({m['cpu_model']}), load {m['loadavg_start'][0]:.2f} → "
        f"{m['loadavg_end'][0]:.2f}" + "".join(f"; {e}" for e in extra) + "."
    )


def fmt_ratio(value: float) -> str:
    return f"{value:.2f} ×"


def fmt_int(value: float) -> str:
    return f"{value:,.0f}"
