"""The one C extension, which ``pyproject.toml`` cannot yet declare outside an experimental table.

``collector/core/_rowbuild.c`` is the store's per-row work in C. It is optional: without a C
compiler the install goes on with a warning, and the store runs the same steps in Python
(``collector/core/native.py`` says which is in use).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "collector.core._rowbuild",
            sources=["collector/core/_rowbuild.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
