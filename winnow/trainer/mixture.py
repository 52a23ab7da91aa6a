"""Data mixtures over groups (sources, skills, clusters): what share of each step's rows
comes from each group, and how it adapts to per-group validation loss.

A mixture holds ``p_t`` over ``m`` groups. The loader keeps Dataset Decomposition
intact (one bucket per step, constant tokens per step) and only chooses *which rows*
of the step's bucket to train on: ``draw_rows`` picks each row's group from ``p_t``
restricted to the groups the bucket has (renormalised), then a row of that group,
all from a seeded generator.

- ``static``: ``p_t = p_0`` (given weights, uniform by default).
- ``stratified``: ``p_t`` proportional to each group's size (tokens), i.e. the
  corpus's natural mix made explicit.
- ``skillit``: Skill-it's online rule (Chen et al. 2023):
  ``p_t ∝ p_0 * exp(eta * A @ sum_{tau in window} L_tau)``, recomputed from ``p_0``
  each round, where ``L_tau`` is the vector of per-group validation losses of the
  last ``window`` rounds and ``A[i, j]`` how much training on group i helps group j.
- ``aioli``: Aioli's rule (Chen et al. 2024): each round estimates ``A_t`` from probe
  steps (``probes``: mixtures ``(1 - eps) e_j + eps p_t``; ``drops[j, i]`` the loss
  drop of group i after probe j; ``A_t`` solves ``P A_t^T = drops``), then
  ``p_{t+1} ∝ p_t * exp(eta * sum_i A_t[i, j] / max|A_t|)``: multiplicative from the
  previous ``p``, not from ``p_0``. Scaling ``A_t`` by its largest magnitude keeps
  ``eta`` unit-free (our choice; the paper tunes ``eta`` per setting).

State (``state_dict``) is plain lists, saved in the checkpoint, so a resumed run
draws the identical stream.

In the trainer (``data.mixture``), groups are the shards' ``source`` values, or their
``group`` column with ``group: group`` (decompose's ``group_column``). Per-group loss
is that of up to ``eval_docs`` held-out documents per group (held-out documents are
chosen per source, so a group may have none: it then gets the mean of the others).
``skillit`` updates every ``every`` steps from it. ``aioli`` runs in rounds of
``every`` steps: the round's first ``m * probe_steps`` steps are the probes, one
group after another in a seeded order per round, each ``probe_steps`` steps drawn
from its probe mixture; the per-group loss is measured before the first probe and
after each, so ``drops[j]`` is the change over probe ``j`` (sequential, as in Aioli's
``LearnParams``: no weights are reset); then ``p`` is updated and the rest of the
round trains on it. Probe steps are ordinary training steps: they count toward
``train.steps`` and the tokens seen, as Aioli counts them in its training budget, so
the run's total tokens stay as configured.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


def _normalised(p) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1 or np.any(p < 0) or p.sum() <= 0:
        raise ValueError(f"mixture weights must be non-negative with a positive sum, got {p}")
    return p / p.sum()


def _softmax_from(log_base: np.ndarray, logits: np.ndarray) -> np.ndarray:
    z = log_base + logits
    z = z - z[np.isfinite(z)].max()
    e = np.exp(z)
    return e / e.sum()


class Mixture:
    """``p`` over groups; ``update`` takes one round's per-group validation losses."""

    kind = "static"

    def __init__(self, groups: list[str], p0=None):
        self.groups = list(groups)
        self.p0 = _normalised(np.ones(len(groups)) if p0 is None else p0)
        if len(self.p0) != len(self.groups):
            raise ValueError(f"{len(self.p0)} weights for {len(self.groups)} groups")
        self.p = self.p0.copy()
        self.rounds = 0

    def update(self, losses) -> np.ndarray:
        """Record a round; returns the new ``p`` (unchanged for a static mixture)."""
        self.rounds += 1
        return self.p

    def weights_at(self, step: int) -> np.ndarray:
        """The weights step ``step``'s rows are drawn from."""
        return self.p

    def state_dict(self) -> dict:
        return {"kind": self.kind, "p": self.p.tolist(), "rounds": self.rounds}

    def load_state_dict(self, state: dict) -> None:
        if state["kind"] != self.kind:
            raise ValueError(f"checkpoint holds a {state['kind']} mixture, not {self.kind}")
        self.p = np.asarray(state["p"], dtype=np.float64)
        self.rounds = int(state["rounds"])


def stratified(groups: list[str], sizes) -> Mixture:
    """A static mixture proportional to ``sizes`` (e.g. each group's tokens)."""
    mixture = Mixture(groups, sizes)
    mixture.kind = "stratified"
    return mixture


class SkillIt(Mixture):
    """Skill-it online mixing: ``p ∝ p_0 exp(eta A sum_window L)``."""

    kind = "skillit"

    def __init__(self, groups, graph, p0=None, eta: float = 0.5, window: int = 3):
        super().__init__(groups, p0)
        self.graph = np.asarray(graph, dtype=np.float64)
        if self.graph.shape != (len(groups), len(groups)):
            raise ValueError(f"skill graph must be {len(groups)}x{len(groups)}")
        self.eta, self.window = eta, window
        self.history: deque[np.ndarray] = deque(maxlen=window)

    def update(self, losses) -> np.ndarray:
        self.history.append(np.asarray(losses, dtype=np.float64))
        total = np.sum(self.history, axis=0)
        self.p = _softmax_from(np.log(self.p0), self.eta * self.graph @ total)
        self.rounds += 1
        return self.p

    def state_dict(self) -> dict:
        return super().state_dict() | {"history": [h.tolist() for h in self.history]}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.history = deque((np.asarray(h) for h in state["history"]), maxlen=self.window)


class Aioli(Mixture):
    """Aioli: estimate the mixing matrix from probe steps, exponentiated-gradient update.

    With ``every`` (0: none) and ``probe_steps``, it also schedules the probes of the training
    loop (see the module doc): ``weights_at`` gives each step's mixture, ``eval_due``
    says when the per-group loss is to be measured and ``observe`` takes it."""

    kind = "aioli"

    def __init__(
        self, groups, p0=None, eta: float = 0.5, eps: float = 0.25, every: int = 0,
        probe_steps: int = 1, seed: int = 0,
    ):  # fmt: skip
        super().__init__(groups, p0)
        self.eta, self.eps, self.every, self.probe_steps, self.seed = (
            eta, eps, every, probe_steps, seed
        )  # fmt: skip
        if every and every <= len(groups) * probe_steps:
            raise ValueError(
                f"mixture.every: {every} steps per round leave no room after "
                f"{len(groups)} probes x {probe_steps} probe_steps"
            )
        self.seen: list[np.ndarray] = []  # this round's losses: before probe 1, after each

    def probes(self) -> np.ndarray:
        """Row j: the mixture of probe j, ``(1 - eps) e_j + eps p``."""
        m = len(self.groups)
        return (1 - self.eps) * np.eye(m) + self.eps * self.p[None, :]

    def estimate(self, drops) -> np.ndarray:
        """``A`` with ``A[i, j]`` the loss drop of group i per unit of group j in a probe,
        from ``drops[j, i]`` (the drop of group i after probe j): ``probes() @ A.T = drops``."""
        return np.linalg.solve(self.probes(), np.asarray(drops, dtype=np.float64)).T

    def update(self, drops) -> np.ndarray:
        """One round from the probes' loss drops; returns the new ``p``."""
        a = self.estimate(drops)
        scale = np.abs(a).max()
        gain = a.sum(axis=0) / scale if scale > 0 else np.zeros(len(self.groups))
        self.p = _softmax_from(np.log(self.p), self.eta * gain)
        self.rounds += 1
        return self.p

    def probe_order(self, round_: int) -> np.ndarray:
        """The groups in the order round ``round_`` probes them (seeded)."""
        return np.random.default_rng([self.seed, round_, 0xA101]).permutation(len(self.groups))

    def weights_at(self, step: int) -> np.ndarray:
        """Probe ``j``'s mixture during its probe steps, ``p`` for the rest of a round."""
        if not self.every:  # no schedule: the caller runs the probes
            return self.p
        pos = step % self.every
        if pos >= len(self.groups) * self.probe_steps:
            return self.p
        return self.probes()[self.probe_order(step // self.every)[pos // self.probe_steps]]

    def eval_due(self, step: int) -> bool:
        """Whether the loss is measured before step ``step``: at each probe boundary."""
        pos = step % self.every
        return pos % self.probe_steps == 0 and pos // self.probe_steps <= len(self.groups)

    def observe(self, step: int, losses) -> None:
        """Per-group losses measured before step ``step``; after the round's last probe
        they give ``drops`` and ``update``."""
        self.seen.append(np.asarray(losses, dtype=np.float64))
        if len(self.seen) == len(self.groups) + 1:
            drops = np.empty((len(self.groups), len(self.groups)))
            order = self.probe_order(step // self.every)
            for k, j in enumerate(order):
                drops[j] = self.seen[k] - self.seen[k + 1]
            self.seen = []
            self.update(drops)

    def state_dict(self) -> dict:
        return super().state_dict() | {"seen": [x.tolist() for x in self.seen]}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.seen = [np.asarray(x, dtype=np.float64) for x in state["seen"]]


def draw_rows(
    row_groups: np.ndarray, p: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` row indices of one bucket: each row's group drawn from ``p`` restricted to
    the groups present in ``row_groups`` (renormalised), then a uniform row of it."""
    present = np.unique(row_groups)
    weights = p[present]
    weights = (
        weights / weights.sum() if weights.sum() > 0 else np.full(len(present), 1 / len(present))
    )
    picks = rng.choice(len(present), size=n, p=weights)
    order = np.argsort(row_groups, kind="stable")
    starts = np.searchsorted(row_groups[order], present)
    counts = np.searchsorted(row_groups[order], present, side="right") - starts
    offsets = rng.integers(0, counts[picks])
    return order[starts[picks] + offsets]


class MixtureConfig(BaseModel):
    """``data.mixture`` of a training config."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    group: Literal["source", "group"] = "source"
    """Column the groups come from: the shards' ``source``, or their ``group`` column
    (written by decompose's ``group_column``, e.g. skills or clusters)."""
    kind: Literal["static", "stratified", "skillit", "aioli"] = "static"
    """``static`` (``weights``, uniform by default), ``stratified`` (by tokens),
    ``skillit`` or ``aioli`` (online, from held-out loss per group)."""
    weights: dict[str, float] | None = None
    """``p_0`` by group name; groups not named get 0 (default: uniform)."""
    graph: str | None = None
    """Skill-it graph: a JSON file ``{"groups": [...], "matrix": [[...]]}`` (default:
    the identity, i.e. each group helps only itself)."""
    eta: float = Field(default=0.5, gt=0)
    """Skill-it's and Aioli's step size."""
    window: int = Field(default=3, ge=1)
    """Rounds of loss Skill-it sums."""
    every: int = Field(default=50, ge=1)
    """Steps between Skill-it updates; Aioli's round length, probe steps included."""
    probe_steps: int = Field(default=4, ge=1)
    """Aioli: training steps of each group's probe per round (they count toward
    ``train.steps`` and the tokens seen)."""
    eps: float = Field(default=0.25, gt=0, lt=1)
    """Aioli: a probe's share of the current mixture, ``(1 - eps) e_j + eps p``."""
    eval_docs: int = Field(default=8, ge=1)
    """Held-out documents per group scored for each update."""


def for_buckets(
    cfg: MixtureConfig, names: list[str], buckets: dict, seed: int = 0
) -> tuple[Mixture, dict]:
    """``(mixture, groups)`` for the loader: ``buckets`` maps a length to its training rows
    (``TableRows``); ``groups`` maps it to each row's group index into ``names`` (the
    dataset's ``sources`` or ``groups``, as ``cfg.group`` says); ``seed`` orders
    Aioli's probes."""
    groups = {n: getattr(rows.table, cfg.group)[rows.rows] for n, rows in buckets.items()}
    tokens = np.zeros(len(names))
    for n, codes in groups.items():
        tokens += n * np.bincount(codes, minlength=len(names))
    return build_mixture(cfg, names, tokens, seed), groups


def build_mixture(
    cfg: MixtureConfig, groups: list[str], tokens: np.ndarray, seed: int = 0
) -> Mixture:
    """The mixture ``cfg`` describes over ``groups`` (with ``tokens`` training tokens each)."""
    p0 = None
    if cfg.weights is not None:
        unknown = sorted(set(cfg.weights) - set(groups))
        if unknown:
            raise ValueError(f"mixture.weights: unknown group(s) {unknown}; groups: {groups}")
        p0 = [cfg.weights.get(g, 0.0) for g in groups]
    if cfg.kind == "stratified":
        return stratified(groups, tokens)
    if cfg.kind == "static":
        return Mixture(groups, p0)
    if cfg.kind == "aioli":
        return Aioli(groups, p0, cfg.eta, cfg.eps, cfg.every, cfg.probe_steps, seed)
    graph = np.eye(len(groups)) if cfg.graph is None else read_graph(Path(cfg.graph), groups)
    return SkillIt(groups, graph, p0, eta=cfg.eta, window=cfg.window)


def read_graph(path: Path, groups: list[str]) -> np.ndarray:
    """A Skill-it matrix from JSON, reordered to ``groups`` (missing groups: identity)."""
    data = json.loads(path.read_text())
    names, matrix = data["groups"], np.asarray(data["matrix"], dtype=np.float64)
    if matrix.shape != (len(names), len(names)):
        raise ValueError(f"{path}: matrix must be {len(names)}x{len(names)}")
    out = np.eye(len(groups))
    index = {name: i for i, name in enumerate(names)}
    for a, ga in enumerate(groups):
        for b, gb in enumerate(groups):
            if ga in index and gb in index:
                out[a, b] = matrix[index[ga], index[gb]]
    return out
