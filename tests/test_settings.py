"""Settings: defaults < config file < CMC_KG_* environment < flags; unknown or malformed ones refused, other
environment variables left alone; every command's flags come from the one table."""

from __future__ import annotations

from dataclasses import fields

import pytest
from click.testing import CliRunner

from cmc_kg.cli import main
from cmc_kg.settings import ENV_PREFIX, REPO_ROOT, Paths, Settings


def test_layers_override_in_order(tmp_path):
    config = tmp_path / "cmc.toml"
    config.write_text('port = 9001\nworkers = 3\nquery_timeout = 5\nservice_allowlist = ["http://a.example/sparql"]\n')
    assert Settings.load(environ={}).port == Settings().port
    from_file = Settings.load(config, environ={})
    assert (from_file.port, from_file.workers, from_file.query_timeout) == (9001, 3, 5.0)
    assert from_file.service_allowlist == ("http://a.example/sparql",)
    from_env = Settings.load(config, environ={"CMC_KG_PORT": "9002", "CMC_KG_SERVICE_ALLOWLIST": "http://b http://c",
                                              "HOME": "/root"})
    assert (from_env.port, from_env.workers, from_env.service_allowlist) == (9002, 3, ("http://b", "http://c"))
    from_flags = Settings.load(config, environ={"CMC_KG_PORT": "9002"}, port=9003, workers=None)
    assert (from_flags.port, from_flags.workers) == (9003, 3)


def test_variables_without_the_prefix_are_ignored():
    """Kubernetes gives a Service named cmc the variables CMC_PORT=tcp://... and CMC_SERVICE_HOST: not settings."""
    injected = {"CMC_PORT": "tcp://10.0.0.7:8000", "CMC_SERVICE_HOST": "10.0.0.7", "CMC_PROT": "1",
                "CMC_KG": "x", "PORT": "1"}
    assert Settings.load(environ=injected) == Settings()
    result = CliRunner().invoke(main, ["serve", "--help"], env=injected)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("where", ["file", "env"])
def test_unknown_setting_is_refused(tmp_path, where):
    config = tmp_path / "cmc.toml"
    config.write_text("prot = 1\n" if where == "file" else "")
    with pytest.raises(ValueError, match="unknown setting 'prot'"):
        Settings.load(config, environ={"CMC_KG_PROT": "1"} if where == "env" else {})


def test_malformed_value_is_refused():
    with pytest.raises(ValueError, match="'port'.*not a valid int"):
        Settings.load(environ={"CMC_KG_PORT": "eighty"})


@pytest.mark.parametrize("command", [["serve"], ["build"], ["query", "ASK {}"], ["link", "wikidata", "--offline"]])
def test_every_command_refuses_a_bad_config_file_before_starting(tmp_path, command):
    config = tmp_path / "cmc.toml"
    config.write_text("timeout = 3\n")
    result = CliRunner().invoke(main, [*command, "--config", str(config)])
    assert result.exit_code == 2 and "unknown setting 'timeout'" in result.output


def test_root_and_build_dir_reach_every_command(tmp_path):
    """--root and CMC_KG_ROOT point at another copy of the data; its build goes under it unless build_dir says."""
    root = tmp_path / "data"
    (root / "ontology").mkdir(parents=True)
    (root / "ontology" / "cmc.ttl").write_text("")
    paths = Settings.load(environ={"CMC_KG_ROOT": str(root)}).paths()
    assert (paths.root, paths.build_dir, paths.graph_dir) == (root, root / "build", root / "graph")
    paths = Settings.load(environ={"CMC_KG_ROOT": str(root)}, build_dir=str(tmp_path / "b")).paths()
    assert paths.build_dir == tmp_path / "b"
    assert Settings().paths() == Paths(REPO_ROOT)
    runner = CliRunner()
    needed = {"query": ["ASK {}"], "export": ["--format", "turtle"], "push": ["--endpoint", "x"],
              "diff": [str(tmp_path), str(tmp_path)], "release": ["1"]}
    for name, _command in _commands(main):
        result = runner.invoke(main, [*name.split(), *needed.get(name, []), "--root", str(tmp_path)])
        assert result.exit_code == 2 and f"{tmp_path} holds no ontology/cmc.ttl" in result.output, (name, result.output)
    for command in (["query", "ASK {}"], ["stats"], ["export", "--format", "turtle"], ["push", "--endpoint", "x"]):
        result = runner.invoke(main, [*command, "--root", str(root)])
        assert result.exit_code == 1 and str(root / "build" / "cmc-kg.nq") in result.output, (command, result.output)
        result = runner.invoke(main, [*command, "--build-dir", str(tmp_path / "b")])
        assert result.exit_code == 1 and str(tmp_path / "b" / "cmc-kg.nq") in result.output, (command, result.output)


def _commands(group, prefix=()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name)), command


def test_every_setting_is_documented_in_readme_and_is_a_flag_of_its_commands():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    runner = CliRunner()
    commands = dict(_commands(main))
    named = {name for setting in fields(Settings) for name in setting.metadata["commands"] or ()}
    assert named <= set(commands), named - set(commands)
    for setting in fields(Settings):
        assert f"`{setting.name}`" in readme and f"{ENV_PREFIX}{setting.name.upper()}" in readme, setting.name
    for name in commands:
        help_text = runner.invoke(main, [*name.split(), "--help"]).output
        for setting in Settings.of(name):
            flag = setting.metadata["flag"] or "--" + setting.name.replace("_", "-")
            assert flag in help_text, (name, setting.name)
    assert {name for name in commands if "--root" not in runner.invoke(main, [*name.split(), "--help"]).output} == set()
