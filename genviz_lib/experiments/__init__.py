"""The recipes behind the chapters: one module per paper, each recipe cached.

**What belongs here:** anything that trains something worth caching — a network, an ensemble, a sweep —
or measures trained nets at a cost worth keeping. A chapter calls the recipe and draws what it returns;
the chapter's cells keep only what is quick (tables, figures, a closed-form model). Each recipe takes one
frozen settings object (:class:`~genviz_lib.experiments.settings.Settings`, built by
``for_profile(profile)``), which is also the key of its cache entries; the results cache adds the
fingerprint of the recipe's module and of the ``genviz_lib`` modules it imports, so editing a recipe
recomputes its results.

- :mod:`~genviz_lib.experiments.huang2020` — Huang et al. (2020): the swiss roll's good and bad minimizers,
  poison sweeps, the rings, image classifiers, basin volumes (chapters 0 to 4);
- :mod:`~genviz_lib.experiments.wu2017` — Wu, Zhu and E (2017): the five-point fits and the optimizer,
  batch-size and initialization tables (chapter 1);
- :mod:`~genviz_lib.experiments.neyshabur2017` — Neyshabur et al. (2017): sharpness and PAC-Bayes over a
  family of nets (chapter 3);
- :mod:`~genviz_lib.experiments.poggio2020` — Poggio et al. (2020): the normalized loss of a family of
  minimizers (chapters 1 and 5);
- :mod:`~genviz_lib.experiments.scoreboard` — chapter 6's zoo of nets, every measure on each, and their scores;
- :mod:`~genviz_lib.experiments.dziugaite2017` — Dziugaite and Roy (2017): a non-vacuous PAC-Bayes bound
  (chapter 6).
"""

from . import dziugaite2017, huang2020, neyshabur2017, poggio2020, scoreboard, settings, wu2017

__all__ = ["dziugaite2017", "huang2020", "neyshabur2017", "poggio2020", "scoreboard", "settings", "wu2017"]
