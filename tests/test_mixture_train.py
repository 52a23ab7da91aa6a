"""Mixtures in the trainer: constant tokens per step, rows following p_t by source
(chi-square), Skill-it updates from held-out loss, and resume with mixture state."""

import json

import numpy as np
import pytest
import torch
from scipy.stats import chisquare
from trainer_fixtures import junk_docs, real_docs, write_bucket_dir

from winnow.errors import ConfigError
from winnow.trainer.config import parse_train_config
from winnow.trainer.curricula import Schedule, get_curriculum
from winnow.trainer.data import BucketDataset
from winnow.trainer.loader import Loader
from winnow.trainer.mixture import Mixture, MixtureConfig, draw_rows, for_buckets
from winnow.trainer.train import Trainer, train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def bucket_dir(tmp_path_factory):
    docs = list(real_docs()) + junk_docs(40)  # three sources: docstring, package, junk
    return write_bucket_dir(tmp_path_factory.mktemp("m") / "buckets", docs, (32, 64, 128))


def loader(bucket_dir, weights, seed=0):
    dataset = BucketDataset(bucket_dir, 0.1)
    buckets = dataset.bucket_sources()
    cfg = MixtureConfig(kind="static", weights=weights)
    mixture, groups = for_buckets(cfg, dataset.sources, buckets)
    schedule = Schedule(get_curriculum("natural"), list(buckets),
                        [b.num_tokens for b in buckets.values()], 1000, 1, seed)  # fmt: skip
    return Loader(buckets, schedule, 1024, seed, mixture=mixture, groups=groups), groups, dataset


def test_rows_follow_p_with_constant_tokens_per_step(bucket_dir):
    weights = {"docstring": 0.2, "package": 0.3, "junk": 0.5}
    load, groups, dataset = loader(bucket_dir, weights)
    counts = np.zeros(len(dataset.sources))
    for step in range(1000):
        n = load.schedule.bucket_at(step)
        # the rows the loader must take: drawn by source from p, seeded by the step
        rows = draw_rows(
            groups[n], load.mixture.p, 1024 // n, np.random.default_rng([0, step, 0x313A])
        )
        batch = load.next()
        assert batch.tokens.shape == (1024 // n, n)  # one bucket, constant tokens per step
        assert np.array_equal(load.sources[n].get(rows), batch.tokens)
        counts += np.bincount(groups[n][rows], minlength=len(counts))
    # every bucket holds all three sources here, so p applies as given
    p = np.array([weights[s] for s in dataset.sources])
    assert chisquare(counts, counts.sum() * p).pvalue > 1e-3


def test_loader_resume_continues_the_stream(bucket_dir):
    weights = {"docstring": 1, "package": 1, "junk": 2}
    a, _, _ = loader(bucket_dir, weights)
    for _ in range(5):
        a.next()
    state = json.loads(json.dumps(a.state_dict()))
    b, _, _ = loader(bucket_dir, weights)
    b.load_state_dict(state)
    for _ in range(5):
        assert np.array_equal(a.next().tokens, b.next().tokens)


def config(bucket_dir, out, mixture, steps=8):
    return parse_train_config(
        {
            "out": str(out),
            "data": {"path": str(bucket_dir), "val_fraction": 0.1, "mixture": mixture},
            "train": {"steps": steps, "tokens_per_step": 1024, "threads": 1, "ckpt_every": 4},
            "eval": {"max_docs_per_source": 2},
        }
    )


def test_skillit_in_the_trainer_updates_and_resumes(bucket_dir, tmp_path):
    mixture = {"kind": "skillit", "every": 2, "eta": 1.0, "eval_docs": 2}
    trainer = Trainer(config(bucket_dir, tmp_path / "full", mixture))
    trainer.run()
    p = trainer.mixture.p
    assert trainer.mixture.rounds == 4 and not np.allclose(p, 1 / 3)
    # identity graph: the source with the highest held-out loss is weighted most
    losses = trainer.source_losses(2)
    assert int(np.argmax(p)) == int(np.argmax(losses))
    # interrupted at 5 (checkpoint at 4) and resumed: the same mixture and weights
    cut = config(bucket_dir, tmp_path / "cut", mixture)
    assert train(cut, halt_after=5) is None
    resumed = Trainer(cut)
    resumed.run()
    assert np.allclose(resumed.mixture.p, p)
    full = torch.load(tmp_path / "full" / "ckpt.pt", weights_only=False)
    again = torch.load(tmp_path / "cut" / "ckpt.pt", weights_only=False)
    assert full["loader"]["mixture"] == again["loader"]["mixture"]


def test_mixture_config_errors(bucket_dir, tmp_path):
    with pytest.raises(ConfigError, match="unknown group"):
        Trainer(config(bucket_dir, tmp_path / "x", {"weights": {"nope": 1}}))
    with pytest.raises(ValueError, match="non-negative"):
        Mixture(["a"], [0])


def test_skillit_graph_from_one_hot_probe_runs(bucket_dir, tmp_path):
    from winnow.trainer.mixture import read_graph
    from winnow.trainer.skillit_graph import main

    cfg = config(bucket_dir, tmp_path / "probe", None, steps=6)
    (tmp_path / "train.json").write_text(json.dumps(cfg.model_dump(mode="json")))
    assert main([str(tmp_path / "train.json"), "--out", str(tmp_path / "g.json"),
                 "--eval-docs", "2"]) == 0  # fmt: skip
    graph = json.loads((tmp_path / "g.json").read_text())
    a = np.array(graph["matrix"])
    assert graph["groups"] == ["docstring", "package", "junk"] and a.shape == (3, 3)
    # training on a source lowers its own held-out loss more than random junk does
    assert a[0, 0] > a[2, 0] and a[1, 1] > a[2, 1]
    assert np.array_equal(read_graph(tmp_path / "g.json", graph["groups"]), a)


def test_skillit_sanity_hardest_source_up_weighted_within_two_updates(bucket_dir, tmp_path):
    """The issue's check: 3 sources, identity graph; the random-character ``junk``
    source has the highest held-out loss and gains weight by the 2nd update."""
    mixture = {"kind": "skillit", "every": 2, "eta": 1.0, "eval_docs": 2}
    trainer = Trainer(config(bucket_dir, tmp_path / "s", mixture, steps=4))
    trainer.run()
    junk = trainer.mixture.groups.index("junk")
    assert trainer.mixture.rounds == 2
    assert int(np.argmax(trainer.source_losses(2))) == junk
    assert (
        trainer.mixture.p[junk] > trainer.mixture.p0[junk] and np.argmax(trainer.mixture.p) == junk
    )
