"""What the benchmark scripts share: paths, the benchmark database, the machine's
description, wrk runs and their parsing, and the statistics of repeated rounds.

Every figure the benchmarks report is a ratio between two measurements taken in the same
run (this machine is shared and noisy); absolute numbers are context only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
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
    """What ran the benchmark, for the report."""
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


def run_wrk(
    url: str,
    script: str,
    *,
    duration: float,
    connections: int,
    threads: int = 1,
    env: dict[str, str] | None = None,
    cpu: str | None = None,
) -> dict[str, Any]:
    """Run wrk with one of the Lua scripts; return its BENCH_JSON line as a dict, plus
    the CPU seconds wrk itself used (the load generator must not eat the server's CPU)."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
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
        url,
    ]
    if cpu:
        cmd = ["taskset", "-c", cpu, *cmd]
    full_env = dict(os.environ)
    full_env["BENCH_THREADS"] = str(threads)
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


def _proc_stats() -> list[tuple[int, int, str, float]]:
    """(pid, ppid, comm, cpu seconds) of every process we can read."""
    rows = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        rows.append(
            (int(entry.name), int(fields[1]), comm, (int(fields[11]) + int(fields[12])) / _CLK_TCK)
        )
    return rows


def cpu_snapshot(server_pid: int | None) -> dict[str, float]:
    """CPU seconds used so far by the server's process tree and by PostgreSQL processes
    (all of them: other users of the same PostgreSQL show up here too)."""
    rows = _proc_stats()
    children: dict[int, list[int]] = {}
    for pid, ppid, _, _ in rows:
        children.setdefault(ppid, []).append(pid)
    tree, todo = set(), [server_pid] if server_pid else []
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(children.get(pid, []))
    return {
        "server": sum(cpu for pid, _, _, cpu in rows if pid in tree),
        "postgres": sum(cpu for _, _, comm, cpu in rows if comm.startswith("postgres")),
    }


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
