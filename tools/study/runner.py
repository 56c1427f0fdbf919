"""The study's driver: :class:`Study` runs the parts in dependency order, each
from a thread of this process that hands its trainings and tests
(:mod:`.runs`) to a pool of worker processes, and keeps the comparison tool's
progress bar with the time left, weighted by each run's iterations. The parts
themselves are :mod:`.shifted_task_parts` (part 3, efficiency),
:mod:`.detection_part`, :mod:`.pruning_part` and :mod:`.same_task`."""

import os
import os.path as osp
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from mmengine.config import Config

from quadra_mm.comparison.cache import fingerprint, load_cached
from quadra_mm.comparison.executor import Progress, concurrently, process_pool

from .arms import ABLATIONS, ARM_BY_NAME, ARMS, BUDGET_FACTOR, BUDGET_PART, PARTS, Arm
from .configs import source_cfg, target_cfg, test_len
from .cost_ratios import resnet50_flop_ratios, step_time_ratios
from .detection_part import run_detection
from .pruning import IN_TRAINING
from .pruning_part import run_pruned_in_training, run_pruning
from .recipe_part import budget_units, close_pairs, extend_close_pairs, run_budget
from .results import summary
from .runs import run_path, test, train
from .same_task import run_same_task, same_task_units
from .scale import TASKS, Scale
from .shifted_task_parts import run_ablations, run_efficiency

__all__ = ['Study']


class Study:
    """The study's parts, each run from a thread of this process that hands
    its trainings and tests to a pool of ``workers`` processes: independent
    runs (lr sweeps, seeds, arms, the detection chain) overlap, dependent
    ones (the seeds after their arm's sweep, part 3 after the lr it reuses)
    wait for what they need."""

    def __init__(
        self,
        scale: Scale,
        work: str,
        data: str,
        parts: Sequence[str] = PARTS,
        workers: int = 1,
        threads: int = 1,
    ) -> None:
        self.scale, self.work, self.data = scale, work, data
        self.parts, self.workers, self.threads = tuple(parts), workers, threads
        # per arm label, per seed: the config and final checkpoint of the
        # kept run (what part 6 prunes)
        self.kept: Dict[str, Dict[int, Tuple[Config, str]]] = {}
        self.pool: Optional[ProcessPoolExecutor] = None
        s = scale
        seeds = len(s.seeds)
        # a test pass: forward only, about a third of a training image
        self.test_units = 5 * (s.test_per_class or 1000) / (3 * s.batch)
        run = s.iters + self.test_units
        units = seeds * (2 * s.source_iters + self.test_units)
        arm_units = len(s.lrs) * s.iters + (seeds - 1) * s.iters + seeds * self.test_units
        units += sum(t in parts for t in TASKS) * len(ARMS) * arm_units
        # what pruning needs when its parts are not run: one arm, the detectors
        units += ('pruning' in parts and 'shift' not in parts) * arm_units
        units += sum(name in parts for name, *_ in ABLATIONS) * seeds * run
        units += ('efficiency' in parts) * seeds * s.iters * s.scratch_factor
        units += (BUDGET_PART in parts) * budget_units(self)
        # detection: per seed 2 classifiers + 2 detectors; a detector
        # iteration costs about 6 classification iterations here.
        units += (
            ('detection' in parts or 'pruning' in parts)
            * seeds
            * (2 * s.det_cls_epochs * 10 + 2 * 6 * s.det_iters)
        )
        units += ('same-task' in parts) * same_task_units(s, self.test_units)
        # pruning: about 9 val and 12 test passes per seed and protocol; a
        # detector image costs about 20 classification images
        self.pruning_units = dict(
            shift=20 * self.test_units, detection=20 * 20 * s.det_val / (3 * s.batch)
        )
        units += ('pruning' in parts) * seeds * sum(self.pruning_units.values())
        # pruned in training: a training run, 9 val passes and a test pass
        self.in_training_units = s.iters + 2 * self.test_units
        units += ('pruning' in parts) * seeds * len(IN_TRAINING) * self.in_training_units
        self.progress = Progress(units)
        self.results: dict = dict(
            scale=asdict(scale), tasks={}, ablation={}, detection={}, pruning={}
        )

    def same_task(self) -> None:
        """The same-task part (:mod:`.same_task`)."""
        start = time.time()
        self.results['same_task'] = run_same_task(self)
        self.results['same_task'].update(
            scale=asdict(self.scale.same_task), seconds=round(time.time() - start, 1)
        )

    def step(self, units: float, label: str, seconds: float, reused: bool = False) -> None:
        """``units`` of the study's work done (``reused``: by an earlier
        invocation), ``seconds`` what it took."""
        self.progress.step(f'{label}: {seconds:.1f} s', reused, units)

    def train_run(self, cfg: Config, metric: str) -> dict:
        """:func:`train` in a worker, or its result from an earlier
        invocation (``reused``) without a round trip to a worker."""
        saved = load_cached(run_path(cfg), fingerprint(cfg))
        if saved is not None:
            return dict(saved, reused=True)
        return dict(self.pool.submit(train, cfg, metric).result(), reused=False)

    def test_run(self, cfg: Config, checkpoint: str, expected_len: Optional[int] = None) -> float:
        return self.pool.submit(
            test, cfg, checkpoint, expected_len or test_len(self.scale)
        ).result()

    def source(self, seeds: Optional[Sequence[int]] = None) -> Dict[int, str]:
        """The source model of each of ``seeds`` (the scale's by default)."""

        def one(seed: int) -> dict:
            cfg = source_cfg(self.scale, self.data, seed, self.work)
            run = self.train_run(cfg, 'accuracy/top1')
            run['test'] = self.test_run(cfg, run['checkpoint'])
            self.step(
                2 * self.scale.source_iters + self.test_units,
                f'source model, seed {seed}: val {run["final"]:.1f} test {run["test"]:.1f}',
                run['seconds'],
                run['reused'],
            )
            return run

        seeds = self.scale.seeds if seeds is None else seeds
        runs = dict(zip(seeds, concurrently(one, seeds)))
        self.results.setdefault('source', {}).update(
            {seed: summary(run) for seed, run in runs.items()}
        )
        return {seed: run['checkpoint'] for seed, run in runs.items()}

    def target(
        self, task: str, arm: Arm, sources: Dict[int, str], iters: int, where: str
    ) -> Callable[[int, float], Config]:
        """``(seed, lr) -> config`` of ``arm`` on ``task`` for ``iters``
        iterations, its runs under ``<work>/<where>/<arm>/``."""
        s = self.scale
        return lambda seed, lr: target_cfg(
            task,
            arm,
            s,
            self.data,
            seed,
            lr,
            sources[seed],
            osp.join(self.work, where, arm.name, f'lr{lr:g}_seed{seed}'),
            iters=iters,
        )

    def arm(
        self,
        task: str,
        arm: Arm,
        sources: Dict[int, str],
        iters: Optional[int] = None,
        where: Optional[str] = None,
    ) -> dict:
        """:meth:`swept` of ``arm`` on ``task`` (``iters``: the scale's by
        default; ``where``: the work sub-directory, ``task`` by default)."""
        s = self.scale
        iters, where = iters or s.iters, where or task
        return self.swept(
            f'{where} / {arm.name}',
            arm.describe,
            s.lrs,
            iters,
            self.target(task, arm, sources, iters, where),
            test_len(s),
        )

    def trained(
        self, label: str, iters: int, make_cfg: Callable[[int, float], Config], seed: int, lr: float
    ) -> Tuple[Config, dict]:
        """``make_cfg(seed, lr)`` trained (or reused)."""
        cfg = make_cfg(seed, lr)
        result = self.train_run(cfg, 'accuracy/top1')
        self.step(
            iters,
            f'{label} lr {lr:g} seed {seed}: val {result["final"]:.1f}',
            result['seconds'],
            result['reused'],
        )
        return cfg, result

    def tested(
        self, label: str, seed: int, trained: Tuple[Config, dict], expected_test_len: int
    ) -> dict:
        """A :meth:`trained` run scored once on the test split, and kept."""
        cfg, result = trained
        self.kept.setdefault(label, {})[seed] = (cfg, result['checkpoint'])
        start = time.time()
        result['test'] = self.test_run(cfg, result['checkpoint'], expected_test_len)
        self.step(
            self.test_units,
            f'{label} seed {seed}: test {result["test"]:.1f}',
            time.time() - start,
            result['reused'],
        )
        return dict(summary(result), seed=seed)

    def swept(
        self,
        label: str,
        describe: str,
        lrs: Sequence[float],
        iters: int,
        make_cfg: Callable[[int, float], Config],
        expected_test_len: int,
    ) -> dict:
        """One arm: ``make_cfg(seed, lr)`` trained at every lr of ``lrs`` on
        the first seed, the lr with the best final val accuracy kept, the
        other seeds trained at it, every kept run tested once."""
        seeds = self.scale.seeds

        def train(seed: int, lr: float) -> Tuple[Config, dict]:
            return self.trained(label, iters, make_cfg, seed, lr)

        sweep = dict(zip(lrs, concurrently(lambda lr: train(seeds[0], lr), lrs)))
        best = max(lrs, key=lambda lr: sweep[lr][1]['final'])
        runs = [sweep[best]] + concurrently(lambda seed: train(seed, best), seeds[1:])
        return dict(
            describe=describe,
            lr=best,
            sweep={f'{lr:g}': sweep[lr][1]['final'] for lr in lrs},
            sweep_seconds=sum(sweep[lr][1]['seconds'] for lr in lrs),
            runs=concurrently(
                lambda seed_run: self.tested(label, *seed_run, expected_test_len),
                zip(seeds, runs),
            ),
        )

    def more_seeds(
        self,
        label: str,
        swept: dict,
        iters: int,
        make_cfg: Callable[[int, float], Config],
        seeds: Sequence[int],
        expected_test_len: int,
    ) -> None:
        """``seeds`` added to the runs of an arm :meth:`swept` ran, at the lr
        it chose."""
        swept['runs'] = swept['runs'] + concurrently(
            lambda seed: self.tested(
                label,
                seed,
                self.trained(label, iters, make_cfg, seed, swept['lr']),
                expected_test_len,
            ),
            seeds,
        )

    def classification(self, parts: Sequence[str]) -> Dict[int, str]:
        """Sources, both tasks' arms, then part 3 and the efficiency runs,
        each as soon as the lr it reuses is chosen."""
        sources = self.source()
        ablations = [a for a in ABLATIONS if a[0] in parts]
        wanted = [(task, arm) for task in TASKS if task in parts for arm in ARMS]
        for name in ('qnv2-adapters', 'quadranet-scratch'):  # what they reuse
            if (ablations or 'efficiency' in parts) and 'shift' not in parts:
                wanted.append(('shift', ARM_BY_NAME[name]))
        if 'pruning' in parts and ('shift', ARM_BY_NAME['qnv2-adapters']) not in wanted:
            wanted.append(('shift', ARM_BY_NAME['qnv2-adapters']))

        def arm_then_dependents(item: Tuple[str, Arm]) -> dict:
            task, arm = item
            out = self.arm(task, arm, sources)
            if task == 'shift' and arm.name == 'qnv2-adapters':
                run_ablations(self, sources, ablations, out['lr'])
                if 'pruning' in parts:
                    run_pruning(
                        self,
                        'shift',
                        self.kept['shift / qnv2-adapters'],
                        'accuracy/top1',
                        ('accuracy/top1',),
                    )
                    run_pruned_in_training(self, sources, out['lr'])
            if task == 'shift' and arm.name == 'quadranet-scratch' and 'efficiency' in parts:
                run_efficiency(self, sources, out['lr'])
            return out

        branches = [lambda: concurrently(arm_then_dependents, wanted)]
        if BUDGET_PART in parts:
            branches.append(lambda: run_budget(self, sources))
        outs, *budget = concurrently(lambda branch: branch(), branches)
        for (task, arm), out in zip(wanted, outs):
            self.results['tasks'].setdefault(task, {})[arm.name] = out
        # part 3b: more seeds where a recipe verdict is close, each budget
        closes = []
        if 'shift' in parts:
            closes.append((self.results['tasks']['shift'], self.scale.iters, 'shift'))
        if budget:
            self.results['budget'] = budget[0]
            closes.append((budget[0]['arms'], budget[0]['iters'], f'shift-{BUDGET_FACTOR}x'))
        if any(close_pairs(arms) for arms, *_ in closes):
            extra = [seed for seed in self.scale.extra_seeds if seed not in self.scale.seeds]
            self.progress.add(len(extra) * (2 * self.scale.source_iters + self.test_units))
            sources = {**sources, **self.source(extra)}
        extended = concurrently(
            lambda close: extend_close_pairs(self, close[0], sources, *close[1:]), closes
        )
        self.results['close_pairs'] = {
            str(iters): info for (_, iters, _), info in zip(closes, extended)
        }
        return sources

    def run(self, parts: Sequence[str] = PARTS) -> dict:
        """Run ``parts`` (all by default); what they need from other parts
        (source models, the lr the shifted task chose) is run or reused."""
        start = time.time()
        branches = {}
        if 'detection' in parts or 'pruning' in parts:
            branches['detection'] = lambda: run_detection(self)
        if 'same-task' in parts:
            branches['same-task'] = self.same_task
        # Every other part adapts the source models.
        if set(parts) - {'detection', 'same-task'}:
            branches['classification'] = lambda: self.classification(parts)
        with process_pool(self.workers, self.threads) as self.pool:
            done = dict(zip(branches, concurrently(lambda branch: branch(), branches.values())))
        if any(name in parts for name, *_ in ABLATIONS):
            # timed in this process once every worker is done: no other load
            start_ratios = time.time()
            self.results['step_time_ratios'] = step_time_ratios(
                self.scale, self.data, done['classification'][self.scale.seeds[0]]
            )
            self.results['resnet50_flop_ratios'] = resnet50_flop_ratios(self.scale.flops_size)
            self.step(0, 'step-time ratios', time.time() - start_ratios)
        self.results.update(
            seconds=round(time.time() - start, 1),
            workers=self.workers,
            finished=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
            machine=f'{platform.machine()}, {os.cpu_count()} CPU cores, '
            f'torch {torch.__version__}, {self.threads} threads per worker',
        )
        return self.results
