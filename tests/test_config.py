"""Pipeline YAML validation: every error names its YAML path."""

import pytest

from winnow.errors import ConfigError
from winnow.pipeline import load_pipeline, parse_pipeline


def spec(**over):
    base = {
        "name": "t",
        "input": {"path": "in.jsonl"},
        "output": {"dir": "out"},
        "stages": [{"id": "n", "use": "normalize"}],
    }
    base.update(over)
    return base


def test_valid_pipeline_parses():
    s = parse_pipeline(spec(seed=7))
    assert s.seed == 7 and s.stages[0].use == "normalize"
    assert s.runner.workers == "auto"


@pytest.mark.parametrize(
    "data, fragment",
    [
        (spec(bogus=1), "bogus: unknown key"),
        (spec(input={"path": "x", "format": "csv"}), "input.format: must be one of"),
        (spec(output={"dir": "o", "format": "csv"}), "'arrow' or 'parquet'"),
        (spec(stages=[{"id": "a", "use": "no_such_stage"}]), "stages[0].use: unknown stage"),
        (
            spec(stages=[{"id": "a", "use": "filter", "params": {"keep": 3}}]),
            "stages[0].params: keep: Input should be a valid string",
        ),
        (
            spec(stages=[{"id": "a", "use": "filter", "params": {"kep": "true"}}]),
            "stages[0].params: keep: Field required",
        ),
        (
            spec(stages=[{"id": "a", "use": "sample", "params": {"fraction": "half"}}]),
            "stages[0].params: fraction",
        ),
        (
            spec(stages=[{"id": "a", "use": "filter", "params": {"keep": "length(text >"}}]),
            "invalid SQL expression",
        ),
        (spec(stages=[{"id": "a b", "use": "normalize"}]), "stages[0].id"),
        (
            spec(stages=[{"id": "a", "use": "normalize"}, {"id": "a", "use": "normalize"}]),
            "duplicate stage id",
        ),
        (
            spec(stages=[{"id": "a", "use": "datatrove:GopherQualityFilter", "params": {"x": 1}}]),
            "unexpected keyword argument 'x'",
        ),
        (spec(stages=[{"id": "a", "use": "datatrove:NoSuchFilter"}]), "datatrove step"),
        (spec(stages=[{"id": "a", "use": "os.path:join"}]), "is not a stage"),
    ],
)
def test_errors_name_the_yaml_path(data, fragment):
    with pytest.raises(ConfigError) as err:
        parse_pipeline(data, "p.yaml")
    msg = str(err.value)
    assert msg.startswith("p.yaml: ")
    assert fragment in msg
    assert "\n" not in msg


def test_load_pipeline_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="pipeline file not found"):
        load_pipeline(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstages: [\n  - id: a\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        load_pipeline(bad)


def test_overrides_apply_before_validation(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\ninput: {path: a}\noutput: {dir: b}\n")
    s = load_pipeline(path, {"input.path": "c", "output.dir": "d"})
    assert s.input.path == "c" and s.output.dir == "d"


def test_import_path_stage_is_accepted():
    s = parse_pipeline(spec(stages=[{"id": "a", "use": "winnow.stages.normalize:Normalize"}]))
    assert s.stages[0].use.endswith(":Normalize")
