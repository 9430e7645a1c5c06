from setuptools import find_packages, setup


def read_version():
    namespace = {}
    with open('mtr_mm/version.py') as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def read_requirements(path):
    with open(path) as f:
        return [line.split('#')[0].strip() for line in f if line.split('#')[0].strip()]


setup(
    name='mtr_mm',
    version=read_version(),
    description='Training-free Mamba Token Reduction (MTR) for Vision Mamba in OpenMMLab',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mtr_mm', 'mtr_mm.*']),
    python_requires='>=3.10',
    install_requires=read_requirements('requirements/runtime.txt'),
    extras_require={
        'tests': read_requirements('requirements/tests.txt'),
        'cuda': read_requirements('requirements/cuda.txt'),
    },
    license='Apache-2.0',
)
