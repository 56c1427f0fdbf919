"""Runs of a comparison, each in its own process (``python -m
quadra_mm.comparison.worker``, under ``torch.distributed.run`` for
``--launcher pytorch`` or ``srun`` for ``slurm``, as ``tools/dist_train.sh`` and
``tools/slurm_train.sh`` start ``tools/train.py``), up to ``workers`` at a time,
each result cached by the fingerprint of its config, and a progress bar with
the time left; and, for the study, a pool of worker processes that run Python
functions (:func:`process_pool`) and a thread fan-out (:func:`concurrently`)."""

import math
import multiprocessing
import os
import os.path as osp
import queue
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import torch
from mmengine.config import Config

from .cache import fingerprint, load_cached

__all__ = [
    'Launch',
    'Run',
    'Progress',
    'Executor',
    'RunFailed',
    'mmss',
    'concurrently',
    'process_pool',
]

WORKER = 'quadra_mm.comparison.worker'


def mmss(seconds: float) -> str:
    return f'{int(seconds // 60)}:{int(seconds % 60):02d}'


def concurrently(fn: Callable, items: Iterable) -> list:
    """``[fn(item) for item in items]``, each call in its own thread: the
    calls only wait on processes, and no thread ever waits for a free thread
    (no pool to exhaust), so calls may nest."""
    items = list(items)
    if len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(len(items)) as threads:
        return list(threads.map(fn, items))


def _set_threads(threads: int) -> None:
    torch.set_num_threads(threads)


def process_pool(workers: int, threads: int = 1) -> ProcessPoolExecutor:
    """A pool of ``workers`` fresh (spawned) processes with ``threads`` torch
    threads each, for callers that run Python functions in workers (the
    study) rather than one command per run (:class:`Executor`)."""
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context('spawn'),
        initializer=_set_threads,
        initargs=(threads,),
    )


class RunFailed(RuntimeError):
    """A run's process failed (the message ends with its log's tail)."""


@dataclass(frozen=True)
class Launch:
    """How each run's process starts.

    Args:
        launcher: ``none`` (one process), ``pytorch`` (``nproc`` processes by
            ``torch.distributed.run`` on this node) or ``slurm`` (``srun``,
            ``nproc`` tasks; ``GPUS_PER_NODE``, ``CPUS_PER_TASK`` and
            ``SRUN_ARGS`` from the environment as ``slurm_train.sh`` reads them).
        nproc: processes (GPUs) per run.
        partition: the slurm partition.
        port: first master port of ``pytorch`` runs (concurrent runs count up).
    """

    launcher: str = 'none'
    nproc: int = 1
    partition: Optional[str] = None
    port: int = 29500

    def key(self) -> Dict[str, object]:
        """What of the launch changes a run's result (part of its fingerprint)."""
        return dict(launcher=self.launcher, nproc=1 if self.launcher == 'none' else self.nproc)

    def command(self, config: str, result: str, key: str, slot: int, job: str) -> List[str]:
        worker = [config, result, '--fingerprint', key, '--launcher', self.launcher]
        if self.launcher == 'pytorch':
            return [
                sys.executable,
                '-m',
                'torch.distributed.run',
                f'--nnodes={os.environ.get("NNODES", 1)}',
                f'--node_rank={os.environ.get("NODE_RANK", 0)}',
                f'--master_addr={os.environ.get("MASTER_ADDR", "127.0.0.1")}',
                f'--nproc_per_node={self.nproc}',
                f'--master_port={self.port + slot}',
                '-m',
                WORKER,
                *worker,
            ]
        if self.launcher == 'slurm':
            per_node = os.environ.get('GPUS_PER_NODE', str(min(self.nproc, 8)))
            return [
                'srun',
                '-p',
                str(self.partition),
                f'--job-name={job}',
                f'--gres=gpu:{per_node}',
                f'--ntasks={self.nproc}',
                f'--ntasks-per-node={per_node}',
                f'--cpus-per-task={os.environ.get("CPUS_PER_TASK", 5)}',
                '--kill-on-bad-exit=1',
                *shlex.split(os.environ.get('SRUN_ARGS', '')),
                sys.executable,
                '-u',
                '-m',
                WORKER,
                *worker,
            ]
        return [sys.executable, '-m', WORKER, *worker]


@dataclass
class Run:
    """One training + test: ``cfg`` (its ``work_dir`` set) and a label."""

    label: str
    cfg: Config

    @property
    def result_path(self) -> str:
        return osp.join(self.cfg.work_dir, 'result.json')


class Progress:
    """A progress bar and the time left (thread-safe). Without ``workers``
    the time left is the rate of the work done by this invocation times the
    work left; with ``workers`` runs at a time, it is the mean time of a
    unit trained here times the units left over ``workers`` (the rate alone
    overestimates it while parallel runs are still going). Cached work is
    done but costs no time.

    Args:
        total: work units in all (runs, or iterations when runs differ).
        workers: units that run at a time, if each unit is one run.
        stream: where the lines go (stdout).
    """

    def __init__(
        self, total: float, workers: Optional[int] = None, width: int = 24, stream=None
    ) -> None:
        self.total, self.workers, self.width = total, workers, width
        self.done = self.reused = 0.0
        self.busy = 0.0  # seconds of the units done here
        self.start = time.time()
        self.lock = threading.Lock()
        self.stream = stream or sys.stdout

    def _left(self, elapsed: float, left: float) -> str:
        if not left:
            return '0:00'
        if not self.done:
            return '?'
        if self.workers and self.busy:
            return f'~{mmss(self.busy / self.done * math.ceil(left / self.workers))}'
        return f'~{mmss(elapsed / self.done * left)}'

    def add(self, units: float) -> None:
        """``units`` more work than ``total`` said (work decided on the way)."""
        with self.lock:
            self.total += units

    def step(
        self, label: str, reused: bool = False, units: float = 1.0, seconds: float = 0.0
    ) -> None:
        """``units`` of work finished in ``seconds`` (``reused``: from a cache)."""
        with self.lock:
            if reused:
                self.reused += units
            else:
                self.done += units
                self.busy += seconds
            finished = self.done + self.reused
            elapsed = time.time() - self.start
            left = max(self.total - finished, 0.0)
            share = finished / self.total if self.total else 1.0
            filled = min(round(self.width * share), self.width)
            bar = '#' * filled + '.' * (self.width - filled)
            print(
                f'[{bar}] {100 * share:5.1f} % | elapsed {mmss(elapsed)} | '
                f'left {self._left(elapsed, left)} | {label}' + (' (cached)' if reused else ''),
                file=self.stream,
                flush=True,
            )


class Executor:
    """Starts runs (each in its own process) or returns their cached result."""

    def __init__(self, launch: Launch, progress: Progress, workers: int = 1) -> None:
        self.launch, self.progress, self.workers = launch, progress, workers
        # a master port offset per concurrent run
        self._slots: queue.Queue = queue.Queue()
        for slot in range(max(workers, 1)):
            self._slots.put(slot)

    def fingerprint(self, run: Run) -> str:
        return fingerprint(run.cfg, **self.launch.key())

    def cached(self, run: Run) -> Optional[dict]:
        return load_cached(run.result_path, self.fingerprint(run))

    def result(self, run: Run, describe=lambda result: '') -> dict:
        """``run``'s result: cached, or from a new process (blocks)."""
        key = self.fingerprint(run)
        saved = load_cached(run.result_path, key)
        if saved is not None:
            self.progress.step(f'{run.label}{describe(saved)}', reused=True)
            return saved
        os.makedirs(run.cfg.work_dir, exist_ok=True)
        config = osp.join(run.cfg.work_dir, 'run_config.py')
        run.cfg.dump(config)
        log = osp.join(run.cfg.work_dir, 'run.log')
        slot = self._slots.get()
        start = time.time()
        try:
            command = self.launch.command(
                config, run.result_path, key, slot, job=run.label.replace(' ', '_')
            )
            with open(log, 'w') as out:
                out.write(shlex.join(command) + '\n')
                out.flush()
                code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT)
        finally:
            self._slots.put(slot)
        saved = load_cached(run.result_path, key)
        if code != 0 or saved is None:
            with open(log) as f:
                tail = f.read()[-3000:]
            raise RunFailed(
                f'{run.label}: the run failed (exit code {code}); its log {log} ends:\n{tail}'
            )
        self.progress.step(
            f'{run.label}{describe(saved)}', reused=False, seconds=time.time() - start
        )
        return saved

    def map(self, runs: Sequence[Run], describe=lambda result: '') -> List[dict]:
        """The results of ``runs``, up to ``workers`` processes at a time."""
        if self.workers <= 1 or len(runs) <= 1:
            return [self.result(run, describe) for run in runs]
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(lambda run: self.result(run, describe), runs))
