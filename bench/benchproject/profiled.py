"""The bench project with every request profiled, for profiling the real server.

    BENCH_PROFILER=cpu gunicorn benchproject.profiled:application \\
        --worker-class gthread --workers 1 --threads 4

``BENCH_PROFILER``:

- ``cpu`` (the default): ``cProfile`` timed by the thread's own CPU clock
  (``time.thread_time``), so waiting for PostgreSQL costs nothing and what is left is the
  Python CPU each function costs — what the benchmark's "gunicorn CPU per request"
  measures. A deterministic profiler inflates small, often-called functions: compare
  shares between endpoints, not absolute times.
- ``wall``: ``pyinstrument`` sampling every 0.1 ms, wall-clock: a call tree in which
  database round trips show as the time spent in ``execute``.

Each request is profiled on its own thread; the profiles of all requests are added up.
``GET /_profile`` answers the report of everything profiled since the last
``/_profile`` (``?reset=1`` discards it instead; ``?sort=tottime`` for cProfile's own
time, ``?dump=<path>`` to also write its pstats file; ``?html=1`` for pyinstrument's
HTML page): warm the server up, ``GET /_profile?reset=1``, drive it with wrk, then read
``/_profile``.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import threading
import time
from typing import Any
from urllib.parse import parse_qs

from benchproject.wsgi import application as django_application

MODE = os.environ.get("BENCH_PROFILER", "cpu")

_lock = threading.Lock()
_profiles: list[Any] = []


def _report(profiles: list[Any], query: dict[str, list[str]]) -> tuple[bytes, str]:
    if MODE == "cpu":
        stats = pstats.Stats(profiles[0], stream=(out := io.StringIO()))
        for profile in profiles[1:]:
            stats.add(profile)
        if "dump" in query:  # for pstats / snakeviz: the file the server writes
            stats.dump_stats(query["dump"][0])
        print(f"{len(profiles)} requests, thread CPU time", file=out)
        stats.sort_stats(query.get("sort", ["cumulative"])[0]).print_stats(80)
        return out.getvalue().encode(), "text/plain; charset=utf-8"
    from pyinstrument import Profiler
    from pyinstrument.session import Session

    first = profiles[0]
    session = Session(  # Session.combine() copies on every call: quadratic here
        frame_records=[record for s in profiles for record in s.frame_records],
        start_time=first.start_time,
        min_interval=min(s.min_interval for s in profiles),
        max_interval=max(s.max_interval for s in profiles),
        duration=sum(s.duration for s in profiles),
        sample_count=sum(s.sample_count for s in profiles),
        start_call_stack=first.start_call_stack,
        target_description=f"{len(profiles)} requests",
        cpu_time=sum(s.cpu_time for s in profiles),
        sys_path=first.sys_path,
        sys_prefixes=first.sys_prefixes,
    )
    profiler = Profiler()
    profiler._last_session = session
    if "html" in query:
        return profiler.output_html().encode(), "text/html"
    return profiler.output_text(unicode=True).encode(), "text/plain; charset=utf-8"


def application(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    if environ.get("PATH_INFO") == "/_profile":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        with _lock:
            profiles = _profiles[:]
            _profiles.clear()
        if not profiles or "reset" in query:
            body, content_type = (b"reset\n" if profiles else b"(nothing profiled)\n"), "text/plain"
        else:
            body, content_type = _report(profiles, query)
        start_response("200 OK", [("Content-Type", content_type)])
        return [body]
    if MODE == "cpu":
        profile = cProfile.Profile(time.thread_time)
        profile.enable()
        try:
            # The body is produced here (Django's responses are lists of bytes).
            result = list(django_application(environ, start_response))
        finally:
            profile.disable()
            with _lock:
                _profiles.append(profile)
        return result
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0001)
    profiler.start()
    try:
        result = list(django_application(environ, start_response))
    finally:
        profiler.stop()
        if profiler.last_session is not None:
            with _lock:
                _profiles.append(profiler.last_session)
    return result
