"""quadra-mm: QuadraNet V2 quadratic adaptation for OpenMMLab detection."""

from setuptools import find_packages, setup

# The stack is pinned as one tested set; tools/bootstrap.sh explains each pin
# and builds mmcv (sdist only, with C++ ops) before this file is installed.
INSTALL_REQUIRES = [
    'torch==2.14.1',
    'torchvision==0.29.1',
    'setuptools>=77,<82',
    'numpy>=1.26',
    'mmengine==0.10.7',
    'mmcv==2.1.0',
    'mmdet==3.3.0',
    'mmpretrain==1.2.0',
    'pycocotools>=2.0.9',
    'matplotlib',  # tools/run_study.py plots (mmengine pulls it too)
]

setup(
    name='quadra_mm',
    version='0.1.0',
    description='QuadraNet V2 quadratic adapters for OpenMMLab (mmdet / mmpretrain)',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['quadra_mm', 'quadra_mm.*']),
    python_requires='>=3.10',
    install_requires=INSTALL_REQUIRES,
    # seaborn: mmdet's tools/analysis_tools/analyze_logs.py imports it; the tests run that tool.
    # timm: tools/gpu_check.py (the H200 check; its --dry-run is a test) adapts timm's ConvNeXt-T.
    # ruff: `make lint` (pyproject.toml), which .ci/run runs before the tests.
    extras_require={'tests': ['pytest>=8', 'pytest-timeout', 'seaborn', 'timm', 'ruff==0.17.6']},
    license='Apache-2.0',
)
