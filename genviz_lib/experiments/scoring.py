"""Chapter 6's scores of the zoo (:mod:`genviz_lib.experiments.scoreboard`): every measure against the gap with its
interval, the differences between measures, each hyperparameter's effect on the gap, and the files behind the page.

- :func:`rank` and :func:`score` — Kendall's τ, Jiang et al.'s granulated τ, Dziugaite et al.'s sign-error over
  single-hyperparameter environments (their noise filter on) and the conditional mutual information of the PGDL
  competition, each with a bootstrap interval (:func:`genviz_lib.scores.score_intervals`);
- :func:`differences` — which differences between two measures the zoo resolves;
- :func:`effects` — how much each hyperparameter moves the gap, with its standard error;
- :func:`write_tables`, :func:`net_rows` — the CSV files behind the page, written atomically;
- :func:`published` — the zoo of a profile as the sweep exported it (``data/results/scoreboard-full*``).

Kept apart from the zoo's training and measures, so that changing a score recomputes no net.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from pathlib import Path

from ..config import publish_text, results_dir
from .scoreboard import HYPERPARAMETERS, MEASURES, Zoo, scored

__all__ = ["label", "interval_text", "rank", "score", "differences", "effects", "published", "net_rows", "write_tables"]


#: How a page names the measures whose label in :data:`~.scoreboard.MEASURES` is written in plain-text
#: notation (kept there unchanged: the zoo's cache is keyed on that module's code).
_PAGE_LABELS = {
    "frobenius": "product of Frobenius norms² / margin²",
    "spectral": "product of spectral norms² / margin²",
    "mag_flatness": "1/σ′², magnitude-aware flatness",
    "neg_log_volume_radius": "− log₁₀ volume radius ⁿ√(V/ωₙ)",
}


def label(key: str) -> str:
    """A measure's name as a page prints it (``scoreboard.MEASURES`` holds the rest)."""
    if key not in MEASURES:
        raise KeyError(f"no measure {key!r}; the measures are {', '.join(MEASURES)}")
    return _PAGE_LABELS.get(key, MEASURES[key][0])


def interval_text(row, key: str, table: bool = False) -> str:
    """A score of a :func:`rank` row and its 95 % interval to two decimals: ``0.26 [0.22, 0.30]``, or for a table
    cell ``0.26<br><small>0.22 to 0.30</small>`` (one value where every resample gave it); "—" when undefined."""
    if not math.isfinite(row[key]):
        return "—"
    value, lo, hi = (f"{row[k]:.2f}" for k in (key, key + "_lo", key + "_hi"))
    if not table:
        return f"{value} [{lo}, {hi}]"
    return lo if lo == hi == value else f"{value}<br><small>{lo} to {hi}</small>"


def rank(table: list[dict], zoo: Zoo, names=None, *, noise_filter: bool = True, samples: int = 1000,
         cmi_samples: int = 200, level: float = 0.95, seed: int = 0):
    """Every score of every measure with its bootstrap interval (:func:`genviz_lib.scores.score_intervals`): a
    :class:`~genviz_lib.scores.Intervals` whose rows are in the order of ``names`` (by default :data:`MEASURES`).
    Only measures defined and not constant on every scored net are scored. The scores compare nets at one training
    loss, so a net that did not reach the target is left out, and with it every net of its seed (the scores need
    the whole grid within a seed): see :func:`scored`. With ``noise_filter`` (the default), the sign-error drops
    the pairs whose gaps differ by less than the test error's noise, as Dziugaite et al. do
    (:func:`~genviz_lib.scores.noise_threshold` of the zoo's test set)."""
    from .. import scores

    kept = scored(table)
    gap = [r["gap"] for r in kept]
    hps = {h: [r[h] for r in kept] for h in zoo.varied}
    fixed = {"seed": [r["seed"] for r in kept]}
    measures = {}
    for name in names or MEASURES:
        mu = [r[name] for r in kept]
        if all(math.isfinite(v) for v in mu) and len(set(mu)) > 1:
            measures[name] = mu
    threshold = scores.noise_threshold(zoo.n_test) if noise_filter else 0.0
    return scores.score_intervals(measures, gap, hps, fixed, min_gap_difference=threshold, samples=samples,
                                  cmi_samples=cmi_samples, level=level, seed=seed)


def score(table: list[dict], zoo: Zoo, names=None, **options) -> list[dict]:
    """One row per measure, best Kendall τ first: ``measure``, ``tau``, ``granulated_tau`` (Ψ), ``psi_<h>`` per
    hyperparameter, ``sign_error_mean``, ``sign_error_worst`` and ``cmi``, each with its interval (``_lo``,
    ``_hi``); the rows of :func:`rank` (``options`` are its keywords)."""
    return sorted(rank(table, zoo, names, **options).rows, key=lambda r: -r["tau"])


def differences(intervals, scores=("tau", "granulated_tau")) -> list[dict]:
    """For every pair of measures of a :func:`rank` result and each score in ``scores``: ``a``, ``b``, ``score``,
    ``difference`` (score of ``a`` − score of ``b``), its paired interval ``lo``, ``hi``, and ``resolved`` (the
    interval excludes 0: the zoo tells the two apart)."""
    out = []
    for score in scores:
        for a, b in itertools.combinations(intervals.measures, 2):
            estimate, low, high = intervals.difference(a, b, score)
            out.append(dict(a=a, b=b, score=score, difference=estimate, lo=float(low), hi=float(high),
                            resolved=bool(low > 0 or high < 0)))
    return out


def effects(table: list[dict], zoo: Zoo) -> list[dict]:
    """Each varied hyperparameter's effect on the gap, from its first to its last value: ``hyperparameter``,
    ``low``, ``high``, ``gap_low`` and ``gap_high`` (mean gaps), ``effect`` (the mean over every setting of the other
    hyperparameters and every seed of ``gap(high) − gap(low)``, the nets paired as the sign-error pairs them),
    ``se`` (its standard error, the pairs' standard deviation over √pairs), ``pairs`` and ``z = effect / se``.
    Nets that did not reach the target are left out with their seeds, as in the scores (:func:`scored`)."""
    kept = scored(table)
    out = []
    for h in zoo.varied:
        low, high = zoo.values(h)[0], zoo.values(h)[-1]
        others = [x for x in (*HYPERPARAMETERS, "seed") if x != h]
        at = {v: {tuple(r[x] for x in others): r["gap"] for r in kept if r[h] == v} for v in (low, high)}
        diffs = [at[high][k] - at[low][k] for k in at[low] if k in at[high]]
        mean = sum(diffs) / len(diffs)
        sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)) if len(diffs) > 1 else math.nan
        se = sd / math.sqrt(len(diffs))
        out.append(dict(hyperparameter=h, low=low, high=high, gap_low=sum(at[low].values()) / len(at[low]),
                        gap_high=sum(at[high].values()) / len(at[high]), effect=mean, se=se, pairs=len(diffs),
                        z=mean / se if se > 0 else math.nan))
    return out


def published(profile: str = "full", results: str | Path | None = None) -> dict | None:
    """The zoo of ``profile`` as ``python -m genviz_lib.sweep zoo --profile <profile> --export`` wrote it under
    ``results`` (by default :func:`~genviz_lib.config.results_dir`), or ``None`` when its files are absent:
    ``table`` (one row per net, as :func:`measure_zoo` gives it), ``scores`` (the rows of :func:`score`),
    ``about`` (the provenance: settings, digest, code fingerprint, host, threads, date, wall time), ``zoo``
    (the :class:`Zoo` it was run with) and ``pairs`` (the rows of :func:`differences`, empty when not exported)."""
    import json

    results = Path(results) if results is not None else results_dir()
    paths = [results / f"scoreboard-{profile}.{ext}" for ext in ("csv", "json")]
    taus = results / f"scoreboard-{profile}-tau.csv"
    if not all(p.is_file() for p in (*paths, taus)):
        return None
    about = json.loads(paths[1].read_text())
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in about["settings"].items() if k != "__dataclass__"}
    zoo = Zoo(**fields)
    read = lambda path: list(csv.DictReader(path.open()))
    table = [{(k[3:] if k.startswith("hp_") else k): _number(v) for k, v in row.items()} for row in read(paths[0])]
    pairs = results / f"scoreboard-{profile}-pairs.csv"
    return dict(table=table, scores=[{k: _number(v) for k, v in r.items()} for r in read(taus)], about=about,
                zoo=zoo, pairs=[{k: _number(v) for k, v in r.items()} for r in read(pairs)] if pairs.is_file() else [])


def _number(text: str):
    """A CSV cell as the value it was written from: a bool, an int, a float (NaN for an empty cell, as pandas
    writes NaN), else the text."""
    if text in ("True", "False"):
        return text == "True"
    if text == "":
        return math.nan
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _write_csv(path: Path, rows: list[dict]) -> None:
    """Write rows to ``path`` as CSV (atomically, see :func:`~genviz_lib.config.publish_text`)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    publish_text(path, text.getvalue())


def net_rows(table: list[dict]) -> list[dict]:
    """The rows of :func:`measure_zoo` as published: the hyperparameters as ``hp_<name>`` columns first."""
    return [{**{f"hp_{h}": r[h] for h in HYPERPARAMETERS}, **{k: v for k, v in r.items() if k not in HYPERPARAMETERS}}
            for r in table]


def write_tables(table: list[dict], taus: list[dict], profile: str, results: str | Path | None = None) -> list[Path]:
    """``scoreboard-<profile>.csv`` (one row per net: ``hp_<name>`` columns, ``seed``, errors and losses, ``gap``,
    one column per measure) and ``scoreboard-<profile>-tau.csv`` (the rows of :func:`score`: every score with
    its interval, ``tau``, ``tau_lo``, ``tau_hi``, …) under ``results`` (by default
    :func:`~genviz_lib.config.results_dir`, ``data/results`` of a checkout)."""
    results = Path(results) if results is not None else results_dir()
    nets = net_rows(table)
    paths = [results / f"scoreboard-{profile}.csv", results / f"scoreboard-{profile}-tau.csv"]
    _write_csv(paths[0], nets)
    _write_csv(paths[1], taus)
    return paths
