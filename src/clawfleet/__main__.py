"""`python -m clawfleet` is `claw`."""

from .cli import main

main()
