"""Builds libiommud-preload.so as the package's one "extension".

The library is LD_PRELOADed into programs that have nothing to do with
Python, so it is compiled as a plain shared object: no Python headers, none
of the interpreter's CFLAGS or LDSHARED (pyenv's rpath, -fwrapv), and a
plain file name that the launcher finds with importlib.resources. setuptools
still gives what it is good at: the build_ext step inside `pip install`, a
platform wheel, and `--inplace` builds for development.
"""
from __future__ import annotations

import os
import shlex

from setuptools import Extension, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_ext import build_ext

LIBRARY = "libiommud-preload"
SOURCES = ["csrc/preload.c"]
# -Werror is not here on purpose: a newer compiler's new warning must not
# break an install. tests/test_preload.py compiles with -Werror on gcc 12.
CFLAGS = ["-std=gnu11", "-O2", "-g", "-fPIC", "-shared", "-fvisibility=hidden",
          "-U_FORTIFY_SOURCE", "-Wall", "-Wextra"]
LIBS = ["-ldl", "-pthread"]


class BuildPreload(build_ext):
    def get_ext_filename(self, fullname: str) -> str:
        parts = fullname.split(".")
        return os.path.join(*parts[:-1], parts[-1] + ".so")

    def build_extension(self, ext: Extension) -> None:
        out = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        cc = shlex.split(os.environ.get("CC", "gcc"))
        cmd = [*cc, *CFLAGS, *shlex.split(os.environ.get("CFLAGS", "")), *ext.sources,
               "-o", out, *shlex.split(os.environ.get("LDFLAGS", "")), *LIBS]
        self.spawn(cmd)


class PlatformWheel(bdist_wheel):
    """The wheel holds native code but nothing tied to a Python ABI."""

    def get_tag(self) -> tuple[str, str, str]:
        _, _, plat = super().get_tag()
        return "py3", "none", plat


setup(
    ext_modules=[Extension(f"iommud_preload.{LIBRARY}", sources=SOURCES)],
    cmdclass={"build_ext": BuildPreload, "bdist_wheel": PlatformWheel},
)
