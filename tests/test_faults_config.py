"""Fault catalogue, part 2: bad pipeline files. ``winnow validate`` (or, where only
data can tell, ``winnow run``) must fail with one short line naming the pipeline
file and the YAML path, before any data is read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from winnow.cli import main

DOCS = Path(__file__).resolve().parent.parent / "docs" / "faults.md"

GOOD_DOC = json.dumps({"id": "a", "text": "some text", "score": 0.5}) + "\n"


def spec(**over) -> dict:
    base = {
        "name": "faults",
        "input": {"path": "in"},
        "output": {"dir": "run"},
        "runner": {"progress": False},
        "stages": [{"id": "all", "use": "filter", "params": {"keep": "true"}}],
    }
    base.update(over)
    return base


def stages(*items) -> dict:
    return spec(stages=list(items))


# name -> (pipeline text or dict, command, expected substring of the one error line)
CASES = {
    "bad_yaml": ("name: x\nstages: [\n", "validate", "p.yaml:3: invalid YAML"),
    "yaml_not_a_mapping": ("- a\n- b\n", "validate", "p.yaml: top level must be a mapping"),
    "unknown_key": (spec(input={"path": "in", "pathh": "in"}), "validate",
                    "p.yaml: input.pathh: unknown key"),
    "bad_value": (spec(input={"path": "in", "on_error": "skip"}), "validate",
                  "input.on_error: must be one of 'quarantine' or 'fail'"),
    "unknown_stage": (stages({"id": "x", "use": "nope"}), "validate",
                      "stages[0].use: unknown stage 'nope'"),
    "unknown_param": (stages({"id": "x", "use": "filter", "params": {"kep": "true"}}),
                      "validate", "stages[0].params: keep: Field required"),
    "bad_sql": (stages({"id": "x", "use": "filter", "params": {"keep": "length(text >"}}),
                "validate", "invalid SQL expression 'length(text >'"),
    "non_boolean_keep": (stages({"id": "x", "use": "filter",
                                 "params": {"keep": "length(text)"}}),
                         "validate", "'length(text)' must be a boolean, not BIGINT"),
    "non_boolean_keep_number": (stages({"id": "x", "use": "filter", "params": {"keep": "0.5"}}),
                                "validate", "'0.5' must be a boolean, not DECIMAL"),
    "non_boolean_keep_at_run": (stages({"id": "x", "use": "filter",
                                        "params": {"keep": "score * 2"}}),
                                "run", "stage 'x': SQL expression 'score * 2' must be a boolean"),
    "unknown_column_at_run": (stages({"id": "x", "use": "filter",
                                      "params": {"keep": "nope > 1"}}),
                              "run", "stage 'x': cannot evaluate ['nope > 1']"),
    "duplicate_stage_id": (stages({"id": "a", "use": "normalize"}, {"id": "a", "use": "normalize"}),
                           "validate", "p.yaml: stages[1].id: duplicate stage id 'a'"),
    "cycle": (stages({"id": "a", "use": "normalize", "after": ["b"]},
                     {"id": "b", "use": "normalize", "after": ["a"]}),
              "validate", "p.yaml: stages: the 'after' references form a cycle among: a -> b"),
    "missing_after": (stages({"id": "a", "use": "normalize", "after": ["zz"]}), "validate",
                      "p.yaml: stages[0].after[0]: unknown stage id 'zz'"),
    "missing_input": (spec(input={"path": "nowhere"}), "run", "nowhere: no such file or directory"),
    "glob_matches_nothing": (spec(input={"path": "in/*.parquet"}), "run",
                             "in/*.parquet: no files match this pattern"),
    "missing_pipeline": (None, "validate", "p.yaml: pipeline file not found"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_bad_pipeline(name, tmp_path, monkeypatch, capsys):
    text, command, expected = CASES[name]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text(GOOD_DOC)
    if text is not None:
        body = text if isinstance(text, str) else json.dumps(text, indent=1)
        (tmp_path / "p.yaml").write_text(body)
    argv = [command, "p.yaml"] + (["--quiet", "--workers", "1"] if command == "run" else [])
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert expected in err, err
    assert len(err) < 300, f"error line too long: {err}"
    if command == "validate":
        assert not (tmp_path / "run").exists()


def test_catalogue_is_documented():
    table = DOCS.read_text()
    missing = [n for n in CASES if f"`{n}`" not in table]
    assert not missing, f"docs/faults.md lacks rows for {missing}"
