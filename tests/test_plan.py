"""DAG planning: fusion of map chains, global materialisation points, errors."""

import pytest

from winnow.errors import ConfigError
from winnow.pipeline import parse_pipeline
from winnow.plan import make_plan


def plan_of(stages):
    spec = parse_pipeline(
        {"name": "t", "input": {"path": "x"}, "output": {"dir": "o"}, "stages": stages}
    )
    plan, _ = make_plan(spec)
    return [(p.kind, p.stage_ids, p.parents) for p in plan.passes], plan


def st(i, use="normalize", after=None, **params):
    d = {"id": i, "use": use, "params": params}
    if after is not None:
        d["after"] = after
    return d


def test_linear_map_chain_fuses_and_global_splits():
    passes, plan = plan_of(
        [st("a"), st("b", "sample", fraction=0.5), st("c", "select", by="1", n=3), st("d")]
    )
    assert passes == [
        ("map", ["a", "b"], ["<input>"]),
        ("global", ["c"], ["b"]),
        ("map", ["d"], ["c"]),
    ]
    assert [p.id for p in plan.sinks] == ["d"]


def test_branches_are_not_fused_and_union_reads_both():
    passes, plan = plan_of(
        [st("a"), st("b", after=["a"]), st("c", after=["a"]), st("d", after=["b", "c"])]
    )
    assert passes == [
        ("map", ["a"], ["<input>"]),
        ("map", ["b"], ["a"]),
        ("map", ["c"], ["a"]),
        ("map", ["d"], ["b", "c"]),
    ]
    assert [p.id for p in plan.sinks] == ["d"]


def test_topological_order_respects_after_even_if_listed_later():
    passes, _ = plan_of([st("a"), st("b", after=["c"]), st("c", after=["a"])])
    assert [p[1] for p in passes] == [["a", "c", "b"]]


def test_two_sinks():
    _, plan = plan_of([st("a"), st("b", after=["a"]), st("c", after=["a"])])
    assert sorted(p.id for p in plan.sinks) == ["b", "c"]


def test_cycle_is_a_config_error():
    with pytest.raises(ConfigError, match="cycle"):
        plan_of([st("a"), st("b", after=["c"]), st("c", after=["b"])])


def test_dangling_after_names_the_yaml_path():
    with pytest.raises(ConfigError, match=r"stages\[1\].after\[0\]: unknown stage id 'zz'"):
        plan_of([st("a"), st("b", after=["zz"])])


def test_no_stages_reads_and_writes():
    passes, _ = plan_of([])
    assert passes == [("map", [], ["<input>"])]


def test_global_first_stage_gets_a_read_pass():
    passes, _ = plan_of([st("top", "select", by="1", n=3), st("b")])
    assert passes == [
        ("map", [], ["<input>"]),
        ("global", ["top"], ["read"]),
        ("map", ["b"], ["top"]),
    ]
