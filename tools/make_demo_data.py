#!/usr/bin/env python
"""Write the deterministic demo "shapes" set (COCO instance segmentation + crops).

    python tools/make_demo_data.py --out data/shapes [--train 240] [--val 60]
        [--img-size 192] [--crop-size 64] [--seed 0] [--skip-existing]

The generator is the package quadra_mm/datasets/demo_shapes/ (no mm imports).
"""

import argparse
import importlib.util
import os.path as osp
import sys

GENERATOR_DIR = osp.join(
    osp.dirname(osp.dirname(osp.abspath(__file__))), 'quadra_mm', 'datasets', 'demo_shapes'
)


def load_generator():
    """The package ``quadra_mm/datasets/demo_shapes``, loaded by file path."""
    # Not through `import quadra_mm`: the package's __init__ sets up the whole
    # torch/mm stack, which the generator needs none of (it runs before that
    # stack is even installed). Its modules import each other relatively,
    # found through the package's search location.
    name = 'quadra_mm_demo_shapes'
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, osp.join(GENERATOR_DIR, '__init__.py'), submodule_search_locations=[GENERATOR_DIR]
        )
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


_gen = load_generator()
CLASSES = _gen.CLASSES
DEFAULTS = _gen.DEFAULTS
make_demo_data = _gen.make_demo_data
summary_line = _gen.summary_line


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='data/shapes', help='output folder')
    p.add_argument('--train', type=int, default=DEFAULTS['num_train'], help='train images')
    p.add_argument('--val', type=int, default=DEFAULTS['num_val'], help='val images')
    p.add_argument('--img-size', type=int, default=DEFAULTS['img_size'])
    p.add_argument('--crop-size', type=int, default=DEFAULTS['crop_size'])
    p.add_argument('--seed', type=int, default=DEFAULTS['seed'])
    p.add_argument(
        '--min-area', type=int, default=30, help='drop instances with fewer visible pixels'
    )
    p.add_argument(
        '--skip-existing',
        action='store_true',
        help='reuse a set already generated with the same arguments',
    )
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    result = make_demo_data(
        a.out,
        num_train=a.train,
        num_val=a.val,
        img_size=a.img_size,
        crop_size=a.crop_size,
        seed=a.seed,
        min_area=a.min_area,
        skip_existing=a.skip_existing,
    )
    print(summary_line(result))
    return result


if __name__ == '__main__':
    main()
