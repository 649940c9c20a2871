"""`.claw/config.toml`: defaults, the file `claw init` writes, and errors that name the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawfleet import git
from clawfleet.config import BuiltinAgentConfig, CommandAgentConfig, Config, load_config
from clawfleet.errors import ConfigError
from clawfleet.models import Importance
from clawfleet.project import initialize

from conftest import claw, write_config


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_when_there_is_no_file(tmp_path):
    config = load_config(tmp_path / "missing.toml")
    assert config == Config()
    assert config.fleet.slots == 3 and config.fleet.target == "main"
    assert config.fleet.default_agent == "builtin" and config.fleet.pool_size == 2
    assert config.checks.commands == [] and config.checks.on_failure == "fail"
    assert config.review.auto_approve == [Importance.low] and config.review.merge_on_approve
    assert config.agent("builtin") == BuiltinAgentConfig()


def test_the_file_claw_init_writes_is_the_defaults(repo):
    git.out("branch", "develop", cwd=repo)  # init refuses a target that does not exist
    initialize(repo, target="develop", checks=["pytest -q", "ruff check ."])
    config = load_config(repo / ".claw" / "config.toml")
    defaults = Config()
    assert config.fleet == defaults.fleet.model_copy(update={"target": "develop"})
    assert config.checks == defaults.checks.model_copy(update={"commands": ["pytest -q", "ruff check ."]})
    assert config.review == defaults.review
    # The only agent it spells out is the built-in one, with its default settings.
    assert list(config.agents) == ["builtin"]
    assert config.agent("builtin") == defaults.agent("builtin")


def test_the_file_claw_init_writes_without_checks(repo):
    initialize(repo)
    config = load_config(repo / ".claw" / "config.toml")
    assert config.fleet.target == "main" and config.checks.commands == []


@pytest.mark.parametrize("check", ['pytest -k "not slow"', r"grep -qE '\d+' out.txt"],
                         ids=["double quotes", "backslash"])
def test_claw_init_writes_valid_toml_for_any_check_command(repo, check):
    initialize(repo, checks=[check])
    assert load_config(repo / ".claw" / "config.toml").checks.commands == [check]


def test_bad_toml_names_the_file(tmp_path):
    path = config_file(tmp_path, "[fleet\nslots = 3\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in caught.value.message and "not valid TOML" in caught.value.message
    assert caught.value.hint


def test_config_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "config.toml"
    path.write_bytes('[fleet]\ntarget = "café"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in caught.value.message


def test_unknown_key_is_named(tmp_path):
    path = config_file(tmp_path, "[fleet]\nslotz = 3\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in caught.value.message
    assert "fleet.slotz" in caught.value.message and "unknown key" in caught.value.message


def test_unknown_section_is_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown key `fleets`"):
        load_config(config_file(tmp_path, "[fleets]\nslots = 3\n"))


def test_wrong_type_is_named(tmp_path):
    path = config_file(tmp_path, '[fleet]\nslots = "many"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "fleet.slots" in caught.value.message and "'many'" in caught.value.message


def test_out_of_range_value_is_named(tmp_path):
    with pytest.raises(ConfigError, match="fleet.slots"):
        load_config(config_file(tmp_path, "[fleet]\nslots = 0\n"))


def test_agent_with_unknown_kind(tmp_path):
    path = config_file(tmp_path, '[agents.mine]\nkind = "robot"\ncommand = ["x"]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "agents.mine" in caught.value.message and "'builtin', 'command'" in caught.value.message


def test_command_agent_needs_a_command(tmp_path):
    with pytest.raises(ConfigError, match="agents.mine"):
        load_config(config_file(tmp_path, '[agents.mine]\nkind = "command"\n'))


def test_command_agent_parses(tmp_path):
    config = load_config(config_file(tmp_path, '[agents.mine]\nkind = "command"\ncommand = ["run-it", "--fast"]\n'))
    assert config.agent("mine") == CommandAgentConfig(kind="command", command=["run-it", "--fast"])


def test_unknown_agent_lists_the_known_ones(tmp_path):
    config = load_config(config_file(tmp_path, '[agents.mine]\nkind = "command"\ncommand = ["x"]\n'))
    with pytest.raises(ConfigError) as caught:
        config.agent("nope")
    assert "unknown agent 'nope'" in caught.value.message
    assert "builtin, mine" in caught.value.message
    assert caught.value.hint and "[agents." in caught.value.hint


def test_broken_config_is_a_one_line_error_in_the_cli(repo):
    assert claw(repo, "add", "a task").returncode == 0
    write_config(repo, '[fleet]\nslots = "many"\n')
    result = claw(repo, "status")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and "config.toml" in lines[0] and "fleet.slots" in lines[0]
    assert lines[1:] == [] or (len(lines) == 2 and lines[1].startswith("hint: "))


@pytest.mark.parametrize("value", [
    "[" * 5000 + "]" * 5000,                                   # deeper than tomllib's recursion
    "{ a = " * 3000 + "1" + " }" * 3000,
    "[" * 300 + "]" * 300,                                     # read, then refused by the schema
], ids=["arrays-5000-deep", "tables-3000-deep", "arrays-300-deep"])
def test_a_config_nested_thousands_deep_is_a_one_line_error(repo, value):
    write_config(repo, f"[fleet]\nslots = {value}\n")
    result = claw(repo, "status", env={"COLUMNS": "1000"})  # a line, not a line wrapped
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and "config.toml" in lines[0] and len(lines[0]) < 400, lines
    assert lines[1:] == [] or (len(lines) == 2 and lines[1].startswith("hint: "))


@pytest.mark.parametrize("text, key", [
    ('[fleet]\ndefault_agent = "mybot"\n', "fleet.default_agent"),
    ('[review]\nai_reviewer = "mybot"\n', "review.ai_reviewer"),
    ('[research]\ncommand = "true"\nmetric_key = "score"\nscope = ["*.py"]\nagent = "mybot"\n', "research.agent"),
])
def test_an_unknown_agent_name_is_caught_when_the_config_is_read(repo, text, key):
    """Not only at `claw add`: `claw status` refuses the config, naming the key."""
    write_config(repo, text)
    result = claw(repo, "status")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"`{key}` names an unknown agent 'mybot' (known: builtin" in result.stderr, result.stderr
    assert "hint: add it under [agents.mybot]" in result.stderr
