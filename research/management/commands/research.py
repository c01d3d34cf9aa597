"""`manage.py research run [--source NAME ...] [--dry-run] [--force]`: an on-demand research run
with a progress bar and a per-source summary table."""

import sys

from django.core.management.base import BaseCommand, CommandError, CommandParser

from research.collect import CollectResult
from research.models import Source
from research.run import research_run

BAR_WIDTH = 30


class Command(BaseCommand):
    help = "Research: fetch the sources now and make today's proposals."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        run = sub.add_parser("run", help="Fetch the sources (all, or those named) and score today's proposals.")
        run.add_argument("--source", action="append", default=[], help="A source's name; repeat for several.")
        run.add_argument("--dry-run", action="store_true", help="Fetch and parse, store nothing, make no proposals.")
        run.add_argument("--force", action="store_true", help="Fetch even the sources already fetched today.")

    def handle(self, *args, action: str, source: list[str], dry_run: bool, force: bool, **options) -> None:
        unknown = sorted(set(source) - set(Source.objects.filter(name__in=source).values_list("name", flat=True)))
        if unknown:
            names = ", ".join(Source.objects.values_list("name", flat=True))
            raise CommandError(f"No source named {', '.join(unknown)}. Sources: {names}")
        total = Source.objects.filter(name__in=source).count() if source else Source.objects.count()
        done = 0

        def progress(result: CollectResult) -> None:
            nonlocal done
            done += 1
            filled = BAR_WIDTH * done // max(total, 1)
            line = f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} {result.source[:40]:<40}"
            if self.stdout.isatty() or sys.stdout.isatty():
                self.stdout.write(line, ending="")
            else:
                self.stdout.write(line.lstrip("\r"))

        report = research_run(names=source, dry_run=dry_run, force=force, progress=progress)
        self.stdout.write("")
        self._table(report.results)
        if dry_run:
            self.stdout.write(f"Dry run: {sum(r.items for r in report.results)} items parsed, nothing stored.")
            return
        self.stdout.write(self.style.SUCCESS(f"{len(report.proposals)} proposals for {report.run.day}:"))
        for proposal in report.proposals:
            self.stdout.write(f"  {proposal.category:<11} {proposal.score:>5g}  {proposal.title[:90]}")

    def _table(self, results: list[CollectResult]) -> None:
        header = f"{'source':<36} {'outcome':<13} {'items':>5} {'new':>5} {'errors':>6} {'time':>7}"
        self.stdout.write(header)
        self.stdout.write("-" * len(header))
        for r in sorted(results, key=lambda r: r.source):
            errors = 1 if r.outcome == "error" else 0
            self.stdout.write(
                f"{r.source[:36]:<36} {r.outcome:<13} {r.items:>5} {r.new:>5} {errors:>6} {r.seconds:>6.2f}s"
            )
            if r.error:
                self.stdout.write(f"    {r.error[:120]}")
            for problem in r.problems[:3]:
                self.stdout.write(f"    warning: {problem[:120]}")
