import pytest

from speechqa.config import Settings, load_settings
from speechqa.errors import ConfigError


def test_defaults_force_chinese_and_int8_auto():
    s = load_settings(environ={})
    assert s.asr.language == "zh"
    assert s.asr.compute_type == "auto"
    assert s.channels.agent == 0 and s.channels.customer == 1
    assert s.turns.script == "simplified"


def test_file_then_env_then_flags(tmp_path):
    cfg = tmp_path / "speechqa.toml"
    cfg.write_text('[asr]\nbeam_size = 3\nhotwords = "宽带 话费"\n[channels]\nagent = 1\ncustomer = 0\n',
                   encoding="utf-8")
    s = load_settings(cfg, environ={"SPEECHQA_ASR_BEAM_SIZE": "2"})
    assert s.asr.beam_size == 2  # environment beats file
    assert s.asr.hotwords == "宽带 话费"
    assert s.channels.agent == 1
    s = load_settings(cfg, environ={"SPEECHQA_ASR_BEAM_SIZE": "2"}, overrides={"asr": {"beam_size": 1}})
    assert s.asr.beam_size == 1  # flags beat environment
    assert s.source == str(cfg)


def test_config_from_environment_variable(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[turns]\ngap_s = 1.5\n", encoding="utf-8")
    assert load_settings(environ={"SPEECHQA_CONFIG": str(cfg)}).turns.gap_s == 1.5


@pytest.mark.parametrize(
    "body, message",
    [
        ("[asr]\nbeam = 3\n", "[asr] unknown key 'beam'"),
        ("[nope]\nx = 1\n", "unknown section [nope]"),
        ("[asr]\nbeam_size = 0\n", "[asr] beam_size must be >= 1"),
        ("[asr]\nbeam_size = 'many'\n", "[asr] beam_size must be int"),
        ("[channels]\nagent = 1\ncustomer = 1\n", "agent and customer must be different"),
        ("[turns]\nscript = 'klingon'\n", "[turns] script must be"),
        ("[asr\n", "not valid TOML"),
        ("[asr]\nbeam_size = true\n", "[asr] beam_size must be int, got True"),
        ("[metrics]\nshout_db = false\n", "[metrics] shout_db must be float"),
        ("[sampling]\nrecognition_per_night = -1\n", "recognition_per_night and tenure_floor must be >= 0"),
        ("[sampling]\ntenure_floor = [4, 3, -2, 2]\n", "tenure_floor must be >= 0"),
        ("[sampling]\nrecognition_min_score = 120\n", "recognition_min_score must be 0-100"),
    ],
)
def test_errors_name_the_file_and_the_setting(tmp_path, body, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, environ={})
    assert str(cfg) in str(err.value)
    assert message in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "absent.toml", environ={})


def test_bad_environment_value_is_named():
    with pytest.raises(ConfigError, match=r"environment: \[asr\] beam_size"):
        load_settings(environ={"SPEECHQA_ASR_BEAM_SIZE": "lots"})


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        Settings().asr.beam_size = 2  # type: ignore[misc]


def test_a_database_password_never_reaches_run_json():
    s = load_settings(environ={"SPEECHQA_STORE_DB": "postgresql://qa:s3cr%40t@db.local:5432/speechqa"})
    assert s.store.db == "postgresql://qa:s3cr%40t@db.local:5432/speechqa"  # the store still gets it
    assert s.to_dict()["store"]["db"] == "postgresql://qa:***@db.local:5432/speechqa"
    assert load_settings(environ={}).to_dict()["store"]["db"] == "speechqa.db"
