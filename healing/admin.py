"""The Manager's Console. Django's admin autodiscovery imports this module; the pages live in
healing.console, one module per part of the loop, in the order they are listed."""

from healing.console import changes, deadletters, issues, patterns, projects, rca, sessions  # noqa: F401 - registers the pages
