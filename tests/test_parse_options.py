"""utils/parse_options.sh: options set the sourcing script's variables; --config is a Kaldi option file, or
the script's own `config` variable when it has one (the recipes' training YAML)."""
from conftest import REPO, run_tool


def parse(tmp_path, preamble: str, *args: str):
    script = tmp_path / "s.sh"
    script.write_text(f"set -euo pipefail\n{preamble}\n. {REPO}/utils/parse_options.sh\n"
                      'echo "nj=$nj stage_x=$stage_x flag=$flag config=${config:-none}"\n')
    return run_tool("bash", str(script), *args, check=False)


def test_options_set_variables(tmp_path):
    out = parse(tmp_path, "nj=4; stage_x=0; flag=true", "--nj", "8", "--stage-x=3", "--flag", "false")
    assert out.returncode == 0 and out.stdout.strip() == "nj=8 stage_x=3 flag=false config=none"
    assert parse(tmp_path, "nj=4; stage_x=0; flag=true", "--nj", "").stdout.startswith("nj= ")  # empty values
    bad = parse(tmp_path, "nj=4; stage_x=0; flag=true", "--nope", "1")
    assert bad.returncode == 1 and "invalid option --nope" in bad.stderr
    assert "expected \"true\" or \"false\"" in parse(tmp_path, "nj=4; stage_x=0; flag=true", "--flag", "1").stderr


def test_config_is_an_option_file_or_the_scripts_own_variable(tmp_path):
    (tmp_path / "opts.conf").write_text("nj=16\n")
    sourced = parse(tmp_path, "nj=4; stage_x=0; flag=true", "--config", str(tmp_path / "opts.conf"))
    assert sourced.stdout.strip().startswith("nj=16 ")
    (tmp_path / "train.yaml").write_text("seed: 1\n")
    own = parse(tmp_path, "nj=4; stage_x=0; flag=true; config=conf/a.yaml", "--config", str(tmp_path / "train.yaml"))
    assert own.returncode == 0 and own.stdout.strip() == f"nj=4 stage_x=0 flag=true config={tmp_path / 'train.yaml'}"
