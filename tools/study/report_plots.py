"""The report's figures of parts 1-2 and the efficiency run: the shifted
examples, the val curves, the final test accuracies and QuadraNet from
scratch against QNv2 stage training (the same-task and pruning figures are
:mod:`.report_same_task`'s and :mod:`.report_pruning`'s)."""

import math
import os.path as osp
from typing import Tuple

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from quadra_mm.comparison.statistics import mean_std  # noqa: E402
from quadra_mm.datasets.fashion_mnist_shift import apply_shift  # noqa: E402

from .report_curves import curve_stats  # noqa: E402
from .report_labels import ARM_LABELS, TASK_LABELS  # noqa: E402

__all__ = ['plot_shift_examples', 'plot_curves', 'plot_bars', 'plot_efficiency']

FASHION_CLASSES = (
    'T-shirt/top',
    'Trouser',
    'Pullover',
    'Dress',
    'Coat',
    'Sandal',
    'Shirt',
    'Sneaker',
    'Bag',
    'Ankle boot',
)


def _read_idx_images(data_dir: str, count: int) -> Tuple[np.ndarray, np.ndarray]:
    images = np.fromfile(
        osp.join(data_dir, 't10k-images-idx3-ubyte'), dtype=np.uint8, offset=16
    ).reshape(-1, 28, 28)
    labels = np.fromfile(osp.join(data_dir, 't10k-labels-idx1-ubyte'), dtype=np.uint8, offset=8)
    picks = [int(np.flatnonzero(labels == c)[0]) for c in range(count)]
    return images[picks], labels[picks]


def plot_shift_examples(data_dir: str, path: str) -> None:
    images, labels = _read_idx_images(data_dir, 5)
    shifted = apply_shift(images, 'solarise_swirl')
    fig, axes = plt.subplots(2, 5, figsize=(7.5, 3.4))
    for col, (img, out, label) in enumerate(zip(images, shifted, labels)):
        for row, pic in enumerate((img, out)):
            ax = axes[row, col]
            ax.imshow(pic, cmap='gray', vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, col].set_title(FASHION_CLASSES[label], fontsize=9)
    axes[0, 0].set_ylabel('source')
    axes[1, 0].set_ylabel('shifted')
    fig.suptitle('Task (b): solarise (v -> sin(0.9 pi sqrt v)) + swirl', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(results: dict, path: str) -> None:
    tasks = results['tasks']
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False)
    for ax, (task, arms) in zip(axes[0], tasks.items()):
        for name, arm in arms.items():
            steps, mean, std = curve_stats(arm['runs'])
            (line,) = ax.plot(
                steps, mean, marker='o', ms=3, label=f'{ARM_LABELS[name]} (lr {arm["lr"]:g})'
            )
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.18)
        ax.set_title(TASK_LABELS[task])
        ax.set_xlabel('iteration')
        ax.set_ylabel('val top-1 (%)')
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc='lower right')
    fig.suptitle(
        f'Validation accuracy vs iteration, mean ± std over {len(results["scale"]["seeds"])} seeds',
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_bars(results: dict, path: str) -> None:
    tasks = results['tasks']
    names = list(next(iter(tasks.values())))
    width = 0.8 / len(tasks)
    fig, ax = plt.subplots(figsize=(9, 4.2))
    x = np.arange(len(names))
    for i, (task, arms) in enumerate(tasks.items()):
        stats = [mean_std([r['test'] for r in arms[n]['runs']]) for n in names]
        ax.bar(
            x + (i - (len(tasks) - 1) / 2) * width,
            [m for m, _ in stats],
            width,
            yerr=[0 if math.isnan(s) else s for _, s in stats],
            capsize=3,
            label=TASK_LABELS[task],
        )
    ax.set_xticks(x)
    ax.set_xticklabels([ARM_LABELS[n] for n in names], rotation=25, ha='right', fontsize=8)
    ax.set_ylabel('test top-1 (%)')
    lows = [r['test'] for arms in tasks.values() for a in arms.values() for r in a['runs']]
    ax.set_ylim(max(0.0, min(lows) - 10), 100)
    ax.grid(axis='y', alpha=0.3)
    ax.legend(fontsize=8, loc='upper left', framealpha=0.95)
    ax.set_title('Final test accuracy per arm, mean ± std over seeds', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_efficiency(results: dict, target: float, path: str) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, runs in (
        ('QuadraNet from scratch', results['efficiency']['runs']),
        ('QNv2 stage training', results['tasks']['shift']['qnv2-stages']['runs']),
    ):
        steps, mean, std = curve_stats(runs)
        (line,) = ax.plot(steps, mean, marker='o', ms=3, label=label)
        ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.18)
    ax.axhline(target, color='gray', ls='--', lw=1, label=f'QNv2 final val ({target:.1f} %)')
    ax.set_xlabel('iteration on the target task')
    ax.set_ylabel('val top-1 (%)')
    ax.set_title('Task (b): adaptation vs high-order from scratch', fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
