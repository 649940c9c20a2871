"""clawfleet: run a fleet of coding agents on one git repository and land their work on main."""

__version__ = "0.1.0"
