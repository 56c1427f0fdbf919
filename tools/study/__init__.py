"""The adaptation study (``tools/run_study.py`` is its command line), one module
per idea:

- :mod:`.scale`: where the configs live, the tasks, the sizes of a full and a
  quick run (:class:`~.scale.Scale`).
- :mod:`.arms`: the arms and part 3's variants, each a function that edits a
  loaded config; :data:`~.arms.PARTS` names every part ``--parts`` accepts.
- :mod:`.configs`: a run's config from a config file (data, schedule, seed,
  work dir); pipeline steps are found by ``type`` (:func:`~.configs.pipeline_step`).
- :mod:`.runs`: one training, test or pruning as a worker process runs it,
  each result cached next to its checkpoint.
- :mod:`.runner`: :class:`~.runner.Study`, which runs the parts in dependency
  order with a pool of worker processes. The cache, the progress bar, the
  thread fan-out and the statistics are the comparison tool's
  (:mod:`quadra_mm.comparison`: ``cache``, ``executor``, ``statistics``).
- :mod:`.shifted_task_parts`: part 3 (ablations) and the efficiency run, on
  task (b) at the lr an arm chose there.
- :mod:`.detection_part`: part 4, the demo detector, QNv2 vs first-order.
- :mod:`.pruning`, :mod:`.pruning_part`: part 6, which adapters can be
  switched off (what is pruned and how it is scored; the runs).
- :mod:`.same_task`: the paper's own experiment, adaptation on the task the
  first-order network was pretrained on (``--parts same-task``).
- :mod:`.cost_ratios`: train-step time and ResNet-50 FLOP ratios of the arms
  and part-3 variants, measured once the workers are done.
- :mod:`.results`: what results.json keeps of a run.
- :mod:`.report`: ``docs/study.md``, its plots and results.json from the
  results, with the prose of :mod:`.report_template` and the sections of
  :mod:`.report_tables`, :mod:`.report_verdicts` (verdicts by
  :func:`quadra_mm.comparison.statistics.verdict`), :mod:`.report_same_task`
  and :mod:`.report_pruning`; the figures of :mod:`.report_plots`; labels in
  :mod:`.report_labels`, val-curve statistics in :mod:`.report_curves`.

Adding a part is a new module with its arms or variants and a function that
runs them with a ``Study``'s pool (as :mod:`.detection_part`), plus a
registration: its name in :data:`~.arms.PARTS`, its call in ``Study.run`` /
``Study.classification`` and its progress units in ``Study.__init__``, and its
section in :mod:`.report`.
"""
