"""Attacks on clawfleet's trust boundaries (../shared/DESIGN.md, "Trust boundaries").

Every test here is an agent, or a network client, trying to get out of what a task allows; each
asserts that the attack failed and that the fleet went on. Run them alone: `pytest -m security`.
"""

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/security/" in str(item.fspath):
            item.add_marker(pytest.mark.security)
