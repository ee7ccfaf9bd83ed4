import pytest
from click.testing import CliRunner

from speechqa.cli import main


def _commands(group, prefix=()):
    for name, cmd in group.commands.items():
        yield prefix + (name,), cmd
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, prefix + (name,))


@pytest.mark.parametrize("path", [p for p, _ in _commands(main)], ids=" ".join)
def test_every_command_has_help_with_an_example(path):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output
    cmd = dict(_commands(main))[path]
    if not hasattr(cmd, "commands"):
        assert "Example:" in result.output


def test_models_list_on_an_empty_folder(tmp_path):
    result = CliRunner().invoke(main, ["models", "list", "--dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "speechqa models install" in result.output


def test_run_with_a_broken_config_stops_before_any_work(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[asr]\nbeam_size = -1\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["run", str(tmp_path), "--out", str(tmp_path / "o"),
                                       "--config", str(cfg)])
    assert result.exit_code == 1
    assert f"Error: {cfg}: [asr] beam_size must be >= 1" in result.output
    assert not (tmp_path / "o").exists()


def test_run_with_a_missing_model_says_how_to_install(tmp_path):
    result = CliRunner().invoke(main, ["run", str(tmp_path), "--out", str(tmp_path / "o"),
                                       "--model", str(tmp_path / "nomodel")])
    assert result.exit_code == 1
    assert "speechqa models install" in result.output


def test_run_on_a_missing_input(tmp_path, model_dir):
    result = CliRunner().invoke(main, ["run", str(tmp_path / "absent"), "--out", str(tmp_path / "o"),
                                       "--model", str(model_dir)])
    assert result.exit_code == 1
    assert "no such folder or manifest" in result.output


def test_run_with_a_missing_user_dictionary_stops_before_any_call(tmp_path, model_dir):
    cfg = tmp_path / "site.toml"
    missing = tmp_path / "products.dict"
    cfg.write_text(f'[text]\nuser_dict = "{missing}"\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["run", "tests/fixtures/calls", "--out", str(tmp_path / "o"),
                                       "--config", str(cfg), "--model", str(model_dir)])
    assert result.exit_code == 1
    assert str(missing) in result.output
    assert not (tmp_path / "o" / "calls.csv").exists()
