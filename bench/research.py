"""Research benchmark: a daily run over 60 sources served from files by a loopback HTTP server,
10 % of them failing (HTTP 500) or slow (answering after the read timeout), LLM off.

    .venv/bin/python bench/research.py [--sources 60] [--serve]

Prints wall time, items/s, peak memory, and when the healthy sources were done compared with the
slow ones. Target: the whole run ≤ 30 s, the slow and failing sources not delaying the others.
`--serve` sets the sources up and keeps the server running, for `manage.py research run` by hand.

Uses DATABASE_URL (default: PostgreSQL `kaizen_bench_research`, recreated each run).
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: make `bench` importable
from bench.harness import free_port, load_average, recreate_database  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kaizen_site.settings")
os.environ.setdefault("SECRET_KEY", "bench")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kaizen_bench_research")
os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6")  # not the tests' databases
os.environ["ANTHROPIC_API_KEY"] = ""  # LLM off: the heuristic scorer
os.environ.setdefault("KAIZEN_RESEARCH_READ_TIMEOUT", "3")

TARGET_SECONDS = 30.0
SLOW_SECONDS = 8.0  # longer than the read timeout: a slow source fails as a timeout
ITEMS_PER_FEED = 30
WORDS = ("AI agents", "LLM inference", "web API", "React", "TypeScript", "browser automation", "RAG",
         "prompt caching", "CSS", "open model", "evals", "onboarding", "accessibility", "edge runtime")  # fmt: skip


class Handler(SimpleHTTPRequestHandler):
    """Serves the payload files; `/slow/…` after SLOW_SECONDS, `/fail/…` with a 500. Sends an ETag
    and honours If-None-Match, as real feeds do."""

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        if self.path.startswith("/fail/"):
            self.send_error(500, "bench failure")
            return
        if self.path.startswith("/slow/"):
            time.sleep(SLOW_SECONDS)
            self.path = self.path.removeprefix("/slow")
        path = Path(self.translate_path(self.path))
        etag = f'"{int(path.stat().st_mtime_ns) if path.exists() else 0}"'
        if path.exists() and self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.end_headers()
            return
        if not path.exists():
            self.send_error(404)
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

    def handle(self):
        # A client that timed out closes first; the late write's broken pipe is expected here.
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass


def rss(n: int) -> str:
    items = "".join(
        f"<item><title>{WORDS[(n + i) % len(WORDS)]} update {n}-{i}</title><link>https://feed{n}.example/{i}</link>"
        f"<guid>f{n}-{i}</guid><pubDate>Sun, 29 Nov 2026 0{i % 10}:00:00 GMT</pubDate>"
        f"<description>&lt;p&gt;What changed in {WORDS[i % len(WORDS)]} for web developers.&lt;/p&gt;"
        "</description></item>"
        for i in range(ITEMS_PER_FEED)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>feed {n}</title>{items}</channel></rss>'


def trending(n: int) -> str:
    rows = "".join(
        f'<article class="Box-row"><h2 class="h3"><a href="/org{n}/repo{i}">org{n} / repo{i}</a></h2>'
        f"<p>An {WORDS[i % len(WORDS)]} toolkit</p><span itemprop='programmingLanguage'>Python</span>"
        f'<span class="d-inline-block float-sm-right">{(i + 1) * 37} stars today</span></article>'
        for i in range(25)
    )
    return f"<html><body>{rows}</body></html>"


def changelog(n: int) -> str:
    entries = "".join(
        f'<article id="v{i}"><h2>Release {n}.{i}</h2><ul><li>Added {WORDS[(n + i) % len(WORDS)]} workspace {n}{i}</li>'
        f"<li>Fixed a crash</li><li>Introducing shortcut for share links {n}{i}</li></ul></article>"
        for i in range(10)
    )
    return f"<html><body>{entries}</body></html>"


def write_payloads(root: Path, count: int) -> list[tuple[str, str, str, dict]]:
    """(kind, name, path, params) for `count` sources: mostly feeds, some pages, HN and changelogs;
    every tenth one fails or is slow."""
    specs = []
    (root / "hn").mkdir()
    for n in range(count):
        if n % 20 == 7:
            kind, name, path = "hackernews", f"HN mirror {n}", f"/hn{n}/topstories.json"
            (root / f"hn{n}" / "item").mkdir(parents=True)
            (root / f"hn{n}" / "topstories.json").write_text(json.dumps(list(range(1, 21))))
            for i in range(1, 21):
                item = {"id": i, "type": "story", "title": f"{WORDS[i % len(WORDS)]} on HN {n}-{i}",
                        "url": f"https://hn{n}.example/{i}", "score": i * 10, "time": 1_790_000_000}  # fmt: skip
                (root / f"hn{n}" / "item" / f"{i}.json").write_text(json.dumps(item))
            params = {"limit": 20}
        elif n % 10 == 3:
            kind, name, path, params = "github_trending", f"Trending {n}", f"/trending{n}.html", {}
            (root / f"trending{n}.html").write_text(trending(n))
        elif n % 10 == 5:
            kind, name, path, params = "changelog", f"Rival {n}", f"/changelog{n}.html", {"entry_selector": "article"}
            (root / f"changelog{n}.html").write_text(changelog(n))
        else:
            kind, name, path, params = "feed", f"Feed {n}", f"/feed{n}.xml", {}
            (root / f"feed{n}.xml").write_text(rss(n))
        if n % 10 == 9:
            path = ("/fail" if n % 20 == 9 else "/slow") + path
            name += " (fails)" if path.startswith("/fail") else " (slow)"
        specs.append((kind, name, path, params))
    return specs


def serve(root: Path) -> tuple[ThreadingHTTPServer, str]:
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), lambda *a: Handler(*a, directory=str(root)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=60)
    parser.add_argument("--serve", action="store_true", help="Set up, then keep serving for manage.py research run.")
    args = parser.parse_args()

    recreate_database(url=os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    from research.models import Source, SourceFetch, SourceItem
    from research.run import research_run

    with tempfile.TemporaryDirectory() as tmp:
        specs = write_payloads(Path(tmp), args.sources)
        server, base = serve(Path(tmp))
        Source.objects.all().delete()  # the seeded real-world sources; this run is offline
        Source.objects.bulk_create(
            [Source(kind=kind, name=name, url=f"{base}{path}", params=params) for kind, name, path, params in specs]
        )
        if args.serve:
            print(f"serving {len(specs)} sources at {base}; DATABASE_URL={os.environ['DATABASE_URL']}; Ctrl-C to stop")
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                return

        # Peak memory is the process's peak RSS: tracemalloc would slow the run itself severalfold.
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.monotonic()
        done_at: dict[str, float] = {}
        report = research_run(
            trigger="bench", progress=lambda r: done_at.__setitem__(r.source, time.monotonic() - started)
        )
        wall = time.monotonic() - started
        server.shutdown()

    items = sum(r.items for r in report.results)
    healthy = [t for name, t in done_at.items() if "(slow)" not in name and "(fails)" not in name]
    slow = [t for name, t in done_at.items() if "(slow)" in name]
    errors = SourceFetch.objects.filter(run=report.run, outcome="error").count()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"sources              {len(specs)} ({errors} failed or timed out)")
    print(f"items parsed         {items} ({SourceItem.objects.count()} stored after dedupe)")
    verdict = "OK" if wall <= TARGET_SECONDS else "MISSED"
    print(f"wall time            {wall:.2f} s   (target ≤ {TARGET_SECONDS:.0f} s)  {verdict}")
    print(f"items/s              {items / wall:,.0f}")
    slow_span = f"{min(slow or [0]):.2f}–{max(slow or [0]):.2f} s"
    print(f"healthy sources done {max(healthy):.2f} s; slow sources gave up at {slow_span}")
    print(f"proposals            {len(report.proposals)}")
    print(f"peak memory          {rss_mb:.0f} MiB RSS ({rss_before:.0f} MiB before the run: Django and migrations)")
    print(f"load average         {load_average()}")


if __name__ == "__main__":
    main()
