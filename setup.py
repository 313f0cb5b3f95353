from setuptools import setup

TEST_CORE = ["pytest>=7", "pytest-timeout>=2", "hypothesis>=6"]
JAX = ["jax>=0.4.30", "numpy>=1.24"]
GRAIN = ["grain>=0.2.10"]
FLAX = ["flax>=0.10"]
# torch: 2.13.0 is the CPU build these machines carry for CPython 3.11; a bare
# "torch" would pull the CUDA build. torchdata is pinned under the same marker:
# unpinned, or on another Python, it could pull a torch (and CUDA) of its own.
# jax, grain and flax need CPython >= 3.11.
ML_TESTS = [f"{requirement}; python_version >= '3.11'" for requirement in JAX + GRAIN + FLAX] + [
    "torch==2.13.0; python_version == '3.11'",
    "torchdata==0.11.0; python_version == '3.11'",
    "tqdm>=4",
]

with open("README.md", encoding="utf-8") as readme:
    long_description = readme.read()

setup(
    name="prefetch_generator",
    version="2.0.0",
    description=(
        "Run a generator in a background thread: a leak-free, hang-free, faster "
        "drop-in for prefetch-generator, with an optional JAX device stage"
    ),
    long_description=long_description,
    long_description_content_type="text/markdown",
    license="Unlicense",
    python_requires=">=3.8",
    packages=["prefetch_generator", "prefetch_generator_jax"],
    package_data={"prefetch_generator": ["py.typed"], "prefetch_generator_jax": ["py.typed"]},
    install_requires=[],
    extras_require={
        "jax": JAX,
        "grain": GRAIN,
        "flax": FLAX,
        "test-core": TEST_CORE,
        "test": TEST_CORE + ML_TESTS,
    },
    classifiers=[
        "License :: OSI Approved :: The Unlicense (Unlicense)",
        "Programming Language :: Python :: 3",
        "Typing :: Typed",
    ],
)
