"""Server settings: defaults < config file < CMC_* environment < flags; unknown or malformed ones refused."""

from __future__ import annotations

from dataclasses import fields

import pytest
from click.testing import CliRunner

from cmc_kg.cli import main
from cmc_kg.settings import REPO_ROOT, ServerConfig


def test_layers_override_in_order(tmp_path):
    config = tmp_path / "cmc.toml"
    config.write_text('port = 9001\nworkers = 3\nquery_timeout = 5\nservice_allowlist = ["http://a.example/sparql"]\n')
    assert ServerConfig.load(environ={}).port == ServerConfig().port
    from_file = ServerConfig.load(config, environ={})
    assert (from_file.port, from_file.workers, from_file.query_timeout) == (9001, 3, 5.0)
    assert from_file.service_allowlist == ("http://a.example/sparql",)
    from_env = ServerConfig.load(config, environ={"CMC_PORT": "9002", "CMC_SERVICE_ALLOWLIST": "http://b http://c",
                                                  "HOME": "/root"})
    assert (from_env.port, from_env.workers, from_env.service_allowlist) == (9002, 3, ("http://b", "http://c"))
    from_flags = ServerConfig.load(config, environ={"CMC_PORT": "9002"}, port=9003, workers=None)
    assert (from_flags.port, from_flags.workers) == (9003, 3)


@pytest.mark.parametrize("where", ["file", "env"])
def test_unknown_setting_is_refused(tmp_path, where):
    config = tmp_path / "cmc.toml"
    config.write_text("prot = 1\n" if where == "file" else "")
    with pytest.raises(ValueError, match="unknown setting 'prot'"):
        ServerConfig.load(config, environ={"CMC_PROT": "1"} if where == "env" else {})


def test_malformed_value_is_refused():
    with pytest.raises(ValueError, match="'port'.*not a valid int"):
        ServerConfig.load(environ={"CMC_PORT": "eighty"})


def test_serve_refuses_a_bad_config_file_before_starting(tmp_path):
    config = tmp_path / "cmc.toml"
    config.write_text("timeout = 3\n")
    result = CliRunner().invoke(main, ["serve", "--config", str(config)])
    assert result.exit_code == 2 and "unknown setting 'timeout'" in result.output


def test_every_setting_is_documented_in_readme_and_cli():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    help_text = CliRunner().invoke(main, ["serve", "--help"]).output
    for setting in fields(ServerConfig):
        assert f"`{setting.name}`" in readme and f"CMC_{setting.name.upper()}" in readme, setting.name
        assert "--" + setting.name.replace("_", "-") in help_text, setting.name
