"""Skill-graph building blocks against hand arithmetic: graph invariants, aggregators,
merge, relabelling, LLM answer parsing and the on-disk artifact."""

import numpy as np
import pytest

from winnow.skills.aggregate import aggregate, similarities, top_skills
from winnow.skills.artifact import read_graph, write_graph
from winnow.skills.extract import ExtractorParams, normalize_skill, parse_skills
from winnow.skills.graph import SkillGraph, build_graph
from winnow.skills.merge import merge_skills
from winnow.skills.relabel import relabel


def unit(*v):
    v = np.asarray(v, dtype=np.float64)
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_graph_weights_and_edges_from_labels():
    names = ["a", "b", "c", "unused"]
    labels = [[0, 1], [0, 1, 2], [2], [0]]
    g = build_graph(names, np.eye(4, dtype=np.float32), labels)
    assert g.names == ["a", "b", "c"]  # a skill no document carries is dropped
    assert g.frequency.tolist() == [3, 2, 2]
    assert np.allclose(g.weights, [3 / 7, 2 / 7, 2 / 7]) and g.weights.sum() == pytest.approx(1)
    # co-occurrence: ab in docs 0 and 1, ac and bc in doc 1: 4 pairs, each counted both ways
    expected = np.array([[0, 2, 1], [2, 0, 1], [1, 1, 0]]) / 8
    assert np.array_equal(g.edges, expected)
    assert np.array_equal(g.edges, g.edges.T) and np.all(np.diag(g.edges) == 0)
    assert g.edge_list() == [(0, 1, 0.25), (0, 2, 0.125), (1, 2, 0.125)]
    # the labels' order within and across documents does not matter
    again = build_graph(names, np.eye(4, dtype=np.float32), [[2], [0], [2, 1, 0], [1, 0]])
    assert np.array_equal(again.edges, g.edges) and np.array_equal(again.weights, g.weights)


def test_graph_without_cooccurrence_has_zero_edges():
    g = build_graph(["a", "b"], np.eye(2, dtype=np.float32), [[0], [1], [1]])
    assert np.array_equal(g.weights, [1 / 3, 2 / 3]) and not g.edges.any()


def test_graph_keeps_unused_labels_when_asked():
    g = build_graph(["a", "b", "c"], np.eye(3, dtype=np.float32), [[0], [2]], keep_unused=True)
    assert g.names == ["a", "b", "c"] and g.weights.tolist() == [0.5, 0.0, 0.5]


def hand_graph():
    # skills along the axes; w = (0.5, 0.3, 0.2), A_01 = A_10 = 0.4, A_12 = A_21 = 0.1
    edges = np.array([[0, 0.4, 0], [0.4, 0, 0.1], [0, 0.1, 0]])
    return SkillGraph(
        ["x", "y", "z"],
        np.array([0.5, 0.3, 0.2]),
        edges,
        np.eye(3, dtype=np.float32),
        np.array([5, 3, 2]),
    )


def test_quad_and_linear_aggregators_by_hand():
    g = hand_graph()
    doc = unit(0.6, 0.8, 0.0)[None, :]  # s = (0.6, 0.8, 0) up to float32 rounding
    s = similarities(doc, g, tau=0.3)
    assert np.allclose(s, [[0.6, 0.8, 0.0]], atol=1e-7)
    node, edge = aggregate(s, g, "quad")
    # node: 0.5*0.36 + 0.3*0.64 = 0.372; edge: 2 * 0.4 * 0.6 * 0.8 = 0.384
    assert node[0] == pytest.approx(0.372, abs=1e-6) and edge[0] == pytest.approx(0.384, abs=1e-6)
    node, edge = aggregate(s, g, "linear")
    # node: 0.5*0.6 + 0.3*0.8 = 0.54; edge: 2 * 0.4 * min(0.6, 0.8) = 0.48
    assert node[0] == pytest.approx(0.54, abs=1e-6) and edge[0] == pytest.approx(0.48, abs=1e-6)
    assert top_skills(s, g.names, 3) == [["y", "x"]]  # z is below tau: not listed


def test_similarities_below_tau_count_zero():
    g = hand_graph()
    s = similarities(unit(0.95, 0.25, 0.2)[None, :], g, tau=0.3)
    assert s[0, 0] > 0.9 and s[0, 1] == 0 and s[0, 2] == 0
    with pytest.raises(ValueError, match="unknown aggregator"):
        aggregate(s, g, "cubic")


def test_merge_is_greedy_by_frequency_with_the_most_frequent_as_representative():
    vectors = {
        "sockets": unit(1, 0, 0),
        "socket": unit(0.99, 0.1, 0),  # cos ~0.995 to "sockets"
        "tcp socket": unit(0.8, 0.6, 0),  # cos 0.8 to "sockets"
        "dates": unit(0, 0, 1),
    }
    freq = {"sockets": 2, "socket": 5, "tcp socket": 1, "dates": 5}
    merged = merge_skills(freq, vectors, threshold=0.9)
    # visiting order: dates (5), socket (5, after dates by name), sockets, tcp socket
    assert merged.names == ["dates", "socket", "tcp socket"]
    socket = merged.report[1]
    assert socket["skill"] == "socket" and socket["frequency"] == 7
    assert [m["name"] for m in socket["members"]] == ["socket", "sockets"]
    assert np.array_equal(merged.embeddings[1], vectors["socket"])
    # a lower threshold also absorbs "tcp socket" (cos to "socket" ~0.85)
    assert merge_skills(freq, vectors, threshold=0.8).names == ["dates", "socket"]


def test_relabel_top_m_above_tau_ties_to_lower_index():
    skills = np.stack([unit(1, 0), unit(0, 1), unit(1, 0)])
    docs = np.stack([unit(1, 0.2), unit(0, 1), unit(-1, 0)])
    assert relabel(docs, skills, top_m=2, tau=0.5) == [[0, 2], [1], []]
    assert relabel(docs, skills, top_m=1, tau=-1.0) == [[0], [1], [1]]


@pytest.mark.parametrize(
    "answer, skills, reason",
    [
        ('["Socket programming", "HTTP", "http "]', ["socket programming", "http"], None),
        ('```json\n{"skills": ["parsing URLs"]}\n```', ["parsing urls"], None),
        ('Sure! Here they are: ["a", "b"]', ["a", "b"], None),
        ("", [], "empty"),
        ("   ", [], "empty"),
        ("List the skills this document needs as a JSON array.", [], "echoed prompt"),
        ('["unterminated', [], "invalid json"),
        ('{"skills": "one string"}', [], "not a list of strings"),
        ("[1, 2]", [], "not a list of strings"),
        ('["", "  "]', [], "no skills"),
    ],
)
def test_parse_llm_skill_lists(answer, skills, reason):
    prompt = "List the skills this document needs as a JSON array.\n\nDocument: ..."
    assert parse_skills(answer, prompt) == (skills, reason)


def test_labels_extractor_needs_its_list():
    with pytest.raises(ValueError, match="non-empty list"):
        ExtractorParams(kind="labels")
    with pytest.raises(ValueError, match="only then"):
        ExtractorParams(labels=["a"])


def test_normalize_skill():
    assert normalize_skill('  "Regular   Expressions."\n') == "regular expressions"


def test_artifact_round_trip_and_identical_bytes(tmp_path):
    g = hand_graph()
    a = write_graph(tmp_path / "a", g, {"tau": 0.3}, [{"skill": "x"}], {"skills": 3})
    b = write_graph(tmp_path / "b", g, {"tau": 0.3}, [{"skill": "x"}], {"skills": 3})
    for name in ("skills.json", "edges.json", "embeddings.npy", "params.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    back = read_graph(a)
    assert back.names == g.names and np.array_equal(back.edges, g.edges)
    assert np.array_equal(back.weights, g.weights) and np.array_equal(back.embeddings, g.embeddings)
    (a / "edges.json").unlink()
    with pytest.raises(ValueError, match="missing edges.json"):
        read_graph(a)
