"""Mixtures over a group column: decompose carries ``group_column`` into every shard as
``group``, and the trainer's ``data.mixture.group: group`` draws rows and measures
held-out loss by it instead of by ``source``."""

import numpy as np
import pyarrow as pa
import pytest
import torch
from scipy.stats import chisquare
from test_decompose import decompose, read_layout, write_files

from winnow.errors import ConfigError, InputError
from winnow.trainer.config import parse_train_config
from winnow.trainer.curricula import Schedule, get_curriculum
from winnow.trainer.data import BucketDataset
from winnow.trainer.loader import Loader
from winnow.trainer.mixture import MixtureConfig, draw_rows, for_buckets
from winnow.trainer.train import Trainer

torch.set_num_threads(1)

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("skill_group", pa.string()),
        ("tokens", pa.list_(pa.uint32())),
    ]
)
SKILLS = ["algebra", "geometry", None]  # a null group is named "null"


def docs(n: int = 150) -> list[dict]:
    """Two sources crossed with three skill groups (so groups differ from sources)."""
    rng = np.random.default_rng(0)
    return [
        {
            "id": f"d{i:04d}",
            "source": ["web", "books"][i % 2],
            "skill_group": SKILLS[i % 3],
            "tokens": rng.integers(0, 64, int(rng.integers(40, 200))).tolist(),
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("g")
    files = write_files(root / "in", docs(), 3, SCHEMA)
    _, manifest = decompose(
        root, files, min_log2=4, max_log2=6, shard_tokens=2048, group_column="skill_group"
    )
    return root / "buckets", manifest


def test_shards_carry_the_group_column(run):
    root, manifest = run
    assert manifest["group_column"] == "skill_group"
    expected = {d["id"]: d["skill_group"] or "null" for d in docs()}
    for folder in [root / f"len_{n}" for n in manifest["buckets"]] + [root / "concat/len_64"]:
        table = read_layout(folder)
        assert table.schema.field("group").type == pa.string()
        groups = table["group"].to_pylist()
        assert groups == [expected[i] for i in table["doc_id"].to_pylist()]


def test_without_group_column_shards_are_unchanged(run, tmp_path):
    files = write_files(tmp_path / "in", docs(), 3, SCHEMA)
    _, manifest = decompose(tmp_path, files, min_log2=4, max_log2=6, shard_tokens=2048)
    assert "group_column" not in manifest
    plain = read_layout(tmp_path / "buckets" / "len_16")
    assert "group" not in plain.schema.names
    grouped = read_layout(run[0] / "len_16")
    assert grouped.drop_columns(["group"]).equals(plain)


def test_unknown_group_column_is_one_line(tmp_path):
    files = write_files(tmp_path / "in", docs(9), 1, SCHEMA)
    with pytest.raises(InputError, match="group_column: no column 'skill'"):
        decompose(tmp_path, files, group_column="skill")


def test_loader_follows_p_by_group(run):
    dataset = BucketDataset(run[0], 0.1)
    assert sorted(dataset.groups) == ["algebra", "geometry", "null"]
    buckets = dataset.bucket_sources()
    weights = {"algebra": 0.6, "geometry": 0.1, "null": 0.3}
    cfg = MixtureConfig(group="group", weights=weights)
    mixture, groups = for_buckets(cfg, dataset.groups, buckets)
    schedule = Schedule(get_curriculum("natural"), list(buckets),
                        [b.num_tokens for b in buckets.values()], 600, 1, 0)  # fmt: skip
    load = Loader(buckets, schedule, 1024, 0, mixture=mixture, groups=groups)
    counts = np.zeros(3)
    for step in range(600):
        n = schedule.bucket_at(step)
        rows = draw_rows(groups[n], mixture.p, 1024 // n, np.random.default_rng([0, step, 0x313A]))
        batch = load.next()
        assert np.array_equal(buckets[n].get(rows), batch.tokens)
        # the rows drawn really are of those groups: their shard `group` column agrees
        table = buckets[n].table
        assert set(table.group[buckets[n].rows[rows]]) <= set(range(3))
        counts += np.bincount(groups[n][rows], minlength=3)
    p = np.array([weights[g] for g in dataset.groups])
    assert chisquare(counts, counts.sum() * p).pvalue > 1e-3


def config(root, out, mixture):
    return parse_train_config(
        {
            "out": str(out),
            "data": {"path": str(root), "val_fraction": 0.1, "mixture": mixture},
            "train": {"steps": 4, "tokens_per_step": 1024, "threads": 1},
            "eval": {"max_docs_per_source": 2},
        }
    )


def test_skillit_over_groups_in_training(run, tmp_path):
    mixture = {"group": "group", "kind": "skillit", "every": 2, "eval_docs": 2}
    trainer = Trainer(config(run[0], tmp_path / "t", mixture))
    trainer.run()
    assert trainer.mixture.groups == trainer.dataset.groups and trainer.mixture.rounds == 2
    # per-group held-out loss: each group's own documents, scored by group
    docs = trainer.dataset.val_documents(2, "group")
    assert {d.group for d in docs} == {"algebra", "geometry", "null"}
    losses = trainer.source_losses(2)
    assert losses.shape == (3,) and len(set(np.round(losses, 6))) == 3


def test_group_mixture_needs_a_group_column(tmp_path):
    files = write_files(tmp_path / "in", docs(60), 1, SCHEMA)
    decompose(tmp_path, files, min_log2=4, max_log2=6)
    with pytest.raises(ConfigError, match="data.mixture.group: .* has no group column"):
        Trainer(config(tmp_path / "buckets", tmp_path / "t", {"group": "group"}))
