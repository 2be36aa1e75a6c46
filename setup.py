"""Builds the optional native fast paths (insane/_speedups.c); everything else is pyproject."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "insane._speedups",
            sources=["insane/_speedups.c"],
            extra_compile_args=["-O2"],
            optional=True,  # without a compiler, insane.speedups falls back to Python
        )
    ]
)
