"""Aioli in the trainer: probe steps scheduled per round, loss drops fed to the update,
probe steps counted in train.steps, resume mid-probe identical."""

import json

import numpy as np
import torch
from test_mixture_train import bucket_dir, config  # noqa: F401 (fixture)

from winnow.trainer.mixture import Aioli
from winnow.trainer.train import Trainer, train

torch.set_num_threads(1)


def test_schedule_and_drops_by_hand():
    mix = Aioli(["a", "b", "c"], eta=1.0, eps=0.5, every=10, probe_steps=2, seed=0)
    order = mix.probe_order(0)
    probes = mix.probes()
    for step in range(10):
        expect = probes[order[step // 2]] if step < 6 else mix.p
        assert np.array_equal(mix.weights_at(step), expect)
    assert [s for s in range(20) if mix.eval_due(s)] == [0, 2, 4, 6, 10, 12, 14, 16]
    seen = [[3.0, 3.0, 3.0], [2.5, 2.9, 3.0], [2.4, 2.2, 2.9], [2.3, 2.1, 2.0]]
    for k, losses in enumerate(seen):
        mix.observe(2 * k, losses)
    drops = np.empty((3, 3))
    for k, j in enumerate(order):  # probe order[k] ran between measurements k and k+1
        drops[j] = np.subtract(seen[k], seen[k + 1])
    ref = Aioli(["a", "b", "c"], eta=1.0, eps=0.5)
    assert mix.rounds == 1 and np.allclose(mix.p, ref.update(drops)) and mix.seen == []


def test_aioli_trains_and_resumes_mid_probe(bucket_dir, tmp_path):  # noqa: F811
    mixture = {"kind": "aioli", "every": 6, "probe_steps": 1, "eta": 1.0, "eval_docs": 2}
    trainer = Trainer(config(bucket_dir, tmp_path / "full", mixture, steps=12))
    results = trainer.run()
    assert trainer.mixture.rounds == 2 and not np.allclose(trainer.mixture.p, 1 / 3)
    assert results["steps"] == 12 and results["tokens"] == 12 * 1024  # probes in budget
    # halted at 9 (checkpoint at 8: two of round 2's four measurements taken)
    cut = config(bucket_dir, tmp_path / "cut", mixture, steps=12)
    assert train(cut, halt_after=9) is None
    state = torch.load(tmp_path / "cut" / "ckpt.pt", weights_only=False)
    assert state["step"] == 8 and len(state["loader"]["mixture"]["seen"]) == 2
    resumed = Trainer(cut)
    resumed.run()
    assert np.array_equal(resumed.mixture.p, trainer.mixture.p)
    full = (tmp_path / "full" / "log.jsonl").read_text().splitlines()
    again = (tmp_path / "cut" / "log.jsonl").read_text().splitlines()
    losses = [[json.loads(x)["loss"] for x in f] for f in (full, again)]
    assert losses[0] == losses[1]
