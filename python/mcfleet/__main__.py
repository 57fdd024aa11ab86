"""`python -m mcfleet`: the same as the `mcfleet` command."""

from mcfleet.cli.main import run

run()
