"""The recipes a sweep can run: each chapter's call of a recipe that trains or measures many nets, with the
settings the chapter gives it (``for_profile(profile)``), so that the sweep fills exactly the cache entries
the chapter reads.

A :class:`Recipe` has its main settings (the ones ``--set field=value`` changes) and a ``call`` that runs the
chapter's calls in the chapter's order (a recipe that measures the poison sweep's nets runs the sweep first).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from ..config import Profile
from ..experiments import dziugaite2017, huang2020, neyshabur2017, poggio2020, scoreboard, scoring, wu2017
from ..experiments.settings import Settings


@dataclasses.dataclass(frozen=True)
class Recipe:
    """``chapter`` and ``about`` say what it is; ``make(profile)`` gives the main settings; ``call(settings,
    cache, profile)`` runs it; ``table(result)``, when there is one, gives the rows ``--export`` writes, or
    ``tables(result, settings, profile)`` several tables by file stem (:meth:`exported`)."""

    chapter: str
    about: str
    make: Callable[[Profile], Settings]
    call: Callable[[Settings, Any, Profile], Any]
    table: Callable[[Any], list[dict]] | None = None
    tables: Callable[[Any, Settings, Profile], dict[str, list[dict]]] | None = None

    def exported(self, name: str, result: Any, settings: Settings, profile: Profile) -> dict[str, list[dict]]:
        """The tables ``--export`` writes, by file stem: ``tables`` when the recipe has it (the chapter's own
        files), else ``table``'s rows as ``<recipe>-<profile>``."""
        if self.tables is not None:
            return self.tables(result, settings, profile)
        return {f"{name}-{profile.name}": self.table(result)}

    def settings(self, profile: Profile, overrides: dict) -> Settings:
        """The main settings of ``profile`` with ``overrides`` applied (checked: a bad value raises here)."""
        settings = self.make(profile)
        return settings.replace(**overrides) if overrides else settings


def _sweep_basins(s, cache, p):
    return huang2020.sweep_basins(huang2020.PoisonSweep.for_profile(p), s, cache, progress=False)


def _attraction(s, cache, p):
    sweep_settings = huang2020.PoisonSweep.for_profile(p)
    sweep = huang2020.poison_sweep(sweep_settings, cache, progress=False)
    bad = huang2020.worst_fitted(sweep, min_train_acc=0.99)  # as chapter 4 picks its bad net
    return huang2020.attraction_runs(sweep_settings, s, bad, cache, progress=False)


def _rings(s, cache, p):
    huang2020.rings_runs(s, cache, progress=False)
    return huang2020.ring_basins(s, huang2020.RingBasins.for_profile(p), cache, progress=False)


def _image_basins(s, cache, p):
    return huang2020.image_basins(huang2020.Images.for_profile(p), s, cache, progress=False)


def _normalized(s, cache, p):
    poggio2020.normalized_family(s, cache, progress=False)
    poggio2020.normalized_gap_sweep(s, cache, progress=False)
    return poggio2020.normalized_trajectory(s, cache, progress=False)


def _zoo(s, cache, p):
    return scoreboard.measure_zoo(s, scoreboard.Measures.for_profile(p), cache, progress=False)


def _rows(result):
    return list(result)


def _scoreboard_tables(table, zoo, p):
    """Chapter 6's files: every net; every measure's scores with their intervals; the paired intervals of the
    differences between two measures' τ and Ψ (which differences of the ranking the zoo resolves)."""
    ranked = scoring.rank(table, zoo)
    return {f"scoreboard-{p.name}": scoring.net_rows(table),
            f"scoreboard-{p.name}-tau": sorted(ranked.rows, key=lambda r: -r["tau"]),
            f"scoreboard-{p.name}-pairs": scoring.differences(ranked)}


def _plain(function):
    """The call of a recipe that takes its settings and the cache alone."""
    return lambda s, cache, p: function(s, cache, progress=False)


RECIPES: dict[str, Recipe] = {
    "swiss_roll_minimizers": Recipe("0-3", "good and bad swiss-roll minimizers, one net per poison factor",
                                    huang2020.SwissRoll.for_profile, _plain(huang2020.swiss_roll_minimizers)),
    "poison_sweep": Recipe("4", "Huang et al.'s Fig. 5: poison factors × seeds on the swiss roll, a job per seed",
                           huang2020.PoisonSweep.for_profile, _plain(huang2020.poison_sweep), lambda sweep: sweep.records()),
    "sweep_basins": Recipe("4", "basin radii and volume of every net of the poison sweep (runs the sweep first)",
                           huang2020.SweepBasins.for_profile, _sweep_basins),
    "attraction": Recipe("4", "retraining from points around the sweep's worst bad minimizer",
                         huang2020.Attraction.for_profile, _attraction, _rows),
    "rings": Recipe("4", "Huang et al.'s Fig. 8: the rings at several gaps, and their basins",
                    huang2020.Rings.for_profile, _rings, _rows),
    "image_minimizers": Recipe("2-4", "a clean and a poisoned image classifier",
                               huang2020.Images.for_profile, _plain(huang2020.image_minimizers)),
    "image_basins": Recipe("4", "basins of the clean and the poisoned image classifier",
                           huang2020.ImageBasins.for_profile, _image_basins),
    "minefield": Recipe("2", "Huang et al.'s Fig. 1: ordinary training, then poisoned runs from its checkpoints",
                        huang2020.Minefield.for_profile, _plain(huang2020.minefield)),
    "three_ways": Recipe("2", "poisoning, attack sets and confusion sets on the 8×8 digits",
                         huang2020.ThreeWays.for_profile, _plain(huang2020.three_ways), _rows),
    "signal_puzzle": Recipe("1", "a conv net, a perceptron and a linear model on MNIST-1D",
                            huang2020.SignalPuzzle.for_profile, _plain(huang2020.signal_puzzle)),
    "puzzle": Recipe("1", "a net and a linear model on Fashion-MNIST, true and random labels",
                     huang2020.Puzzle.for_profile, _plain(huang2020.puzzle)),
    "optimizers": Recipe("1", "every optimizer of torch.optim on one net",
                         huang2020.Optimizers.for_profile, _plain(huang2020.optimizer_comparison)),
    "wu_tables": Recipe("1", "Wu et al.'s Tables 1 and 2: batch sizes and initializations",
                        wu2017.BatchAndInit.for_profile, _plain(wu2017.batch_and_init_runs)),
    "poggio_size_width": Recipe("1", "Poggio et al.: the gap against training-set size and width",
                                poggio2020.SizeAndWidth.for_profile, _plain(poggio2020.size_and_width_sweeps)),
    "bicriteria": Recipe("3", "Neyshabur et al.'s Fig. 2: sharpness and PAC-Bayes of nets on true and random labels",
                         neyshabur2017.Bicriteria.for_profile, _plain(neyshabur2017.bicriteria_runs), _rows),
    "normalized": Recipe("5", "Poggio et al.'s family of minimizers, the gap sweep and the trajectory",
                         poggio2020.Normalized.for_profile, _normalized),
    "neyshabur_sizes": Recipe("6", "Neyshabur et al.'s Fig. 1: norms against training-set size",
                              neyshabur2017.NormsVsSize.for_profile, _plain(neyshabur2017.norms_vs_size), _rows),
    "neyshabur_confusion": Recipe("6", "Neyshabur et al.'s Fig. 3: confusion sets",
                                  neyshabur2017.ConfusionSweep.for_profile, _plain(neyshabur2017.confusion_sweep), _rows),
    "neyshabur_width": Recipe("6", "Neyshabur et al.'s Fig. 4: hidden units",
                              neyshabur2017.HiddenUnitsSweep.for_profile, _plain(neyshabur2017.hidden_units_sweep), _rows),
    "neyshabur_conditions": Recipe("6", "Neyshabur et al.'s Fig. 5: conditions C1-C3",
                                   neyshabur2017.Conditions.for_profile, _plain(neyshabur2017.conditions)),
    "zoo": Recipe("6", "the scoreboard's zoo: every net trained, every measure on each",
                  scoreboard.Zoo.for_profile, _zoo, _rows, _scoreboard_tables),
    "nonvacuous_bound": Recipe("6", "Dziugaite and Roy's optimized PAC-Bayes bound",
                               dziugaite2017.NonvacuousBound.for_profile, _plain(dziugaite2017.nonvacuous_bound)),
}
