"""Parsers, validators, the ProX executor, segmentation and the request cache, on
hand-written inputs whose answers were worked out by hand."""

import json

import pytest

from winnow.errors import ConfigError
from winnow.llm.base import Request, Result
from winnow.llm.cache import RequestCache, request_key
from winnow.rephrase import parse, prox
from winnow.rephrase.segment import segments
from winnow.rephrase.templates import BUILTIN, Template, load_templates


@pytest.fixture(scope="module")
def chat_format():
    from llm_server import chat_format as load

    return load()


PLAIN = Template(prompt="{text}", min_ratio=0.2, max_ratio=3.0)
SOURCE = "The river floods every spring and the farmers plant rice after the water recedes."


def test_lead_in_is_stripped_and_plain_text_passes():
    answer = (
        "Sure! Here is the rewritten text:\nEach spring the river floods; rice is planted later."
    )
    assert parse.check(answer, SOURCE, PLAIN, "stop") == (
        "Each spring the river floods; rice is planted later.",
        None,
    )


@pytest.mark.parametrize(
    "answer, finish, reason",
    [
        ("   \n ", "stop", "empty"),
        ("the cat sat on the mat " * 8, "stop", "repetition"),
        ("Each spring the river floods and", "length", "truncated"),
        ("I'm sorry, but I cannot help with that request.", "stop", "refusal"),
        (SOURCE, "stop", "echo"),
        ("Floods.", "stop", "too_short"),
        (
            " ".join(f"Sentence {i} talks about topic {i * 7} in its own words." for i in range(6)),
            "stop",
            "too_long_output",
        ),
    ],
)
def test_rejection_reasons(answer, finish, reason):
    assert parse.check(answer, SOURCE, PLAIN, finish) == (None, reason)


def test_repetition_ratio_by_hand():
    # 16 words "a b c d" x4 -> 13 four-grams, only 4 distinct -> 1 - 4/13
    assert parse.repetition_ratio("a b c d " * 4) == pytest.approx(1 - 4 / 13)
    assert parse.repetition_ratio("one two three") == 0.0  # too short to judge


def test_prefix_tags_and_code_fence():
    wiki = BUILTIN["nemotron_wiki"]
    assert parse.parse("Paraphrase: A river.", wiki) == ("A river.", None)
    assert parse.parse("A river.", wiki) == (None, "missing_prefix")
    rewire = BUILTIN["rewire"]
    answer = "It is about floods.\n<rewritten>\nThe river floods.\n</rewritten> done"
    assert parse.parse(answer, rewire) == ("The river floods.", None)
    assert parse.parse("<rewritten>never closed", rewire) == (None, "missing_tags")
    code = Template(prompt="{text}", parser="code")
    assert parse.parse("x\n```python\nkeep_doc()\n```\n```\nsecond\n```", code) == (
        "keep_doc()\n",
        None,
    )
    assert parse.parse("no fence here", code) == (None, "no_code")


def test_qa_pairs_and_bullets():
    answer = (
        "Question: Why does it flood?\nAnswer: Snow melts\nin spring.\n"
        "Q: Orphan question?\n"
        "Q2) What is planted?\nA2) Rice."
    )
    assert parse.qa_pairs(answer) == [
        ("Why does it flood?", "Snow melts in spring."),
        ("What is planted?", "Rice."),
    ]
    qa = BUILTIN["wrap_qa"]
    assert parse.parse("Just prose.", qa) == (None, "unparsable_qa")
    assert parse.parse(
        "Facts:\n* rice\n2. floods\n- spring", BUILTIN["nemotron_knowledge_list"]
    ) == (
        "- rice\n- floods\n- spring",
        None,
    )
    assert parse.parse("nothing listed", BUILTIN["nemotron_knowledge_list"]) == (None, "no_bullets")


DOC = "Home | About | Login\nThe river floods.\nFarmers plant rice.\nCopyright 2024\nShare this"


def test_prox_remove_lines_is_zero_based_and_inclusive():
    out = prox.run_chunk_program("remove_lines(start=3, end=4)\nremove_lines(0, 0)", DOC)
    assert out.text == "The river floods.\nFarmers plant rice."
    assert (out.errors, out.fallback) == (0, False)


def test_prox_normalize_runs_after_removals_in_program_order():
    program = (
        "```python\nnormalize(source_str='rice', target_str='wheat')\n"
        "remove_lines(0, 0)\nnormalize('wheat', 'barley')\nremove_lines(3, 4)\n```"
    )
    assert prox.run_chunk_program(program, DOC).text == "The river floods.\nFarmers plant barley."


def test_prox_one_error_is_skipped_two_fall_back_to_the_original():
    one = prox.run_chunk_program("remove_lines(0, 0)\nremove_lines(7, 9)", DOC)
    assert one.text == DOC.split("\n", 1)[1] and one.errors == 1 and not one.fallback
    two = prox.run_chunk_program("remove_lines(0, 0)\nremove_lines(7, 9)\nexplode()", DOC)
    assert two.text == DOC and two.errors == 2 and two.fallback


def test_prox_never_executes_python_and_drops_on_drop_doc():
    out = prox.run_chunk_program("__import__('os').system('true')\nremove_lines(0, 'x')", DOC)
    assert out.fallback and out.text == DOC
    assert prox.run_chunk_program("drop_doc()", DOC).text is None
    assert prox.run_doc_program("Reasoning first.\n```python\ndrop_doc()\n```") is False
    assert prox.run_doc_program("keep_doc()") is True
    assert prox.run_doc_program("keep it!") is None


def test_prox_numbered_lines():
    assert prox.number_lines("a\nb") == "[000] a\n[001] b"


def test_segments_fit_the_budget_and_rejoin_exactly(chat_format):
    paragraph = "The river floods every spring. Farmers wait for the water to recede. "
    text = (paragraph * 6 + "\n\n") * 3 + "x" * 700 + "\nlast line"
    for budget in (7, 40, 100, 5000):
        pieces = segments(text, budget, chat_format.count, chat_format.offsets)
        assert "".join(pieces) == text
        assert all(chat_format.count(p) <= budget for p in pieces)
        assert all(pieces)
    assert segments(text, 5000, chat_format.count, chat_format.offsets) == [text]
    # a budget smaller than a paragraph cuts at sentence ends first
    cut = segments(paragraph * 2, 20, chat_format.count, chat_format.offsets)
    assert cut[0].endswith(". ")


def test_cache_survives_a_torn_last_record(tmp_path):
    path = tmp_path / "c.jsonl"
    fingerprint = {"model": "m", "model_sha256": "abc"}
    reqs = [Request((("user", f"doc {i}"),), 16, seed=i) for i in range(3)]
    keys = [request_key(fingerprint, r) for r in reqs]
    cache = RequestCache(path)
    cache.put(keys[0], Result("zero", prompt_tokens=3, completion_tokens=1))
    cache.put(keys[1], Result("one"))
    cache.put(keys[2], Result.failed("backend_error", "down"))  # errors are not cached
    cache.close()
    with open(path, "ab") as f:
        f.write(b'{"key": "' + keys[2].encode() + b'", "resu')  # killed mid-write
    again = RequestCache(path)
    assert again.torn == 1 and len(again) == 2 and again.get(keys[0]).text == "zero"
    again.put(keys[2], Result("two"))
    again.close()
    lines = path.read_text().splitlines()
    assert [json.loads(line)["result"]["text"] for line in lines] == ["zero", "one", "two"]


def test_cache_key_changes_with_everything_that_decides_the_text():
    fp = {"model": "m", "model_sha256": "abc", "chat_template_hash": "t"}
    base = Request((("user", "x"),), 16, seed=1)
    key = request_key(fp, base)
    variants = [
        request_key({**fp, "chat_template_hash": "u"}, base),
        request_key({**fp, "model_sha256": "abd"}, base),
        request_key(fp, Request((("user", "y"),), 16, seed=1)),
        request_key(fp, Request((("user", "x"),), 17, seed=1)),
        request_key(fp, Request((("user", "x"),), 16, seed=2)),
        request_key(fp, Request((("user", "x"),), 16, temperature=0.7, seed=1)),
    ]
    assert key not in variants and len(set(variants)) == len(variants)


def test_templates_hash_and_user_templates(tmp_path):
    assert len({t.hash for t in BUILTIN.values()}) == len(BUILTIN)
    changed = BUILTIN["wrap_easy"].model_copy(update={"version": 2})
    assert changed.hash != BUILTIN["wrap_easy"].hash
    file = tmp_path / "t.yaml"
    file.write_text("mine:\n  prompt: 'Summarise: {text}'\n  parser: bullets\n")
    found = load_templates({"inline": {"prompt": "Say {text}"}}, str(file))
    assert found["mine"].parser == "bullets" and "inline" in found and "wrap_qa" in found
    with pytest.raises(ConfigError, match=r"templates\.bad\.prompt"):
        load_templates({"bad": {"prompt": "no placeholder"}}, None)
    with pytest.raises(ConfigError, match="t.yaml: mine.parser"):
        file.write_text("mine:\n  prompt: '{text}'\n  parser: nope\n")
        load_templates({}, str(file))


@pytest.mark.parametrize(
    "params, match",
    [
        ({"styles": ["nope"]}, r"stages\[0\]\.params.*unknown style 'nope'"),
        ({"styles": ["wrap_easy", "wrap_qa"], "mode": "column"}, "one style per row"),
        ({"backend": {"kind": "openai"}}, r"backend\.openai\.base_url"),
        ({"backend": {"kind": "onnx", "batchsize": 2}}, r"backend\.onnx\.batchsize: unknown key"),
        ({"routes": [{"where": "score >", "styles": ["wrap_qa"]}]}, "invalid SQL"),
    ],
)
def test_bad_rephrase_params_fail_before_any_data_is_read(tmp_path, params, match):
    from winnow.pipeline import parse_pipeline

    spec = {
        "name": "t",
        "input": {"path": str(tmp_path / "missing.jsonl")},
        "output": {"dir": str(tmp_path / "run")},
        "stages": [{"id": "rp", "use": "rephrase", "params": params}],
    }
    with pytest.raises(ConfigError, match=match):
        parse_pipeline(spec)
