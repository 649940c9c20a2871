"""Command groups of `claw` (`claw memory ...`, `claw research ...`), one module each.

Each module defines a `typer.Typer` named `app`; `clawfleet.cli` registers it under its name.
Shared printing helpers live in `_common`.
"""
