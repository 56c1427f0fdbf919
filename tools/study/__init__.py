"""The adaptation study (``tools/run_study.py`` is its command line), one module
per idea:

- :mod:`.scale`: where the configs live, the tasks, the sizes of a full and a
  quick run (:class:`~.scale.Scale`).
- :mod:`.arms`: the arms and part 3's variants, each a function that edits a
  loaded config; :data:`~.arms.PARTS` names every part ``--parts`` accepts.
- :mod:`.configs`: a run's config from a config file (data, schedule, seed,
  work dir); pipeline steps are found by ``type`` (:func:`~.configs.pipeline_step`).
- :mod:`.runner`: trainings and tests in a pool of worker processes, each
  result cached next to its checkpoint, and :class:`~.runner.Study`, which
  runs the parts in dependency order. The cache, the progress bar, the thread
  fan-out and the statistics are the comparison tool's
  (:mod:`quadra_mm.comparison`: ``cache``, ``executor``, ``statistics``).
- :mod:`.results`: what results.json keeps of a run.
- :mod:`.same_task`: the paper's own experiment, adaptation on the task the
  first-order network was pretrained on (``--parts same-task``).
- :mod:`.report`, :mod:`.report_pruning`: ``docs/study.md`` and its plots from
  the results (verdicts by :func:`quadra_mm.comparison.statistics.verdict`).
- :mod:`.pruning`: part 6, which adapters can be switched off.

Adding a part (for example a same-task adaptation part or an adapter-pruning
part) is a new module with its arms or variants and a ``Study`` method that
runs them, plus a registration: its name in :data:`~.arms.PARTS`, its call in
``Study.run`` / ``Study.classification`` and its progress units in
``Study.__init__``, and its section in :mod:`.report`.
"""
