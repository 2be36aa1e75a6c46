"""Builds the native parts; everything else is pyproject.

- insane.engine._engine (insane/engine/src/*.c, on OpenSSL's libcrypto): the native data
  plane; optional (the Python one stands in), C11 with -Wall -Wextra -Werror.
  INSANE_ENGINE_CFLAGS adds flags (the sanitizer build: .ci/engine-sanitize).
- insane._speedups (insane/_speedups.c): per-message fast paths; optional, Python stands in.
- insane._xdp (insane/native/_xdp.c, on libxdp and libbpf) and the XDP program it attaches
  (insane/native/xdp_redirect.bpf.c, compiled with clang for BPF into xdp_redirect.bpf.o):
  the AF_XDP transport. Built where the headers and clang are (Debian: libxdp-dev,
  libbpf-dev, clang); elsewhere the transport is unavailable and `insane doctor` says why.
- insane._dpdk (insane/native/_dpdk.c, on DPDK's EAL, ethdev and mbuf): the DPDK transport.
  Built where pkg-config finds libdpdk (Debian: dpdk-dev); the drivers (net_af_packet,
  net_af_xdp, net_tap, PCI NICs) are loaded by the EAL at run time.
"""

import glob
import os
import shlex
import shutil
import subprocess
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

BPF_SOURCE = "insane/native/xdp_redirect.bpf.c"
BPF_OBJECT = "insane/native/xdp_redirect.bpf.o"


def dpdk_flags() -> tuple[list[str], list[str]] | None:
    """(compile flags, libraries) for DPDK from pkg-config, or None without it."""
    try:
        cflags = subprocess.run(
            ["pkg-config", "--cflags", "libdpdk"], capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None
    libs = ["rte_eal", "rte_ethdev", "rte_mbuf", "rte_mempool", "rte_ring", "rte_net"]
    return cflags, libs


def have_xdp_headers() -> bool:
    return os.path.exists("/usr/include/xdp/xsk.h") and os.path.exists("/usr/include/bpf/bpf.h")


class BuildExtWithBpf(build_ext):
    """build_ext that also compiles the XDP program and ships it beside the extension."""

    def run(self) -> None:
        self.build_bpf()
        super().run()

    def build_bpf(self) -> None:
        clang = shutil.which("clang")
        if clang is None or not have_xdp_headers():
            print("setup: clang or the libbpf/libxdp headers are missing: no XDP program")
            return
        up_to_date = os.path.exists(BPF_OBJECT) and os.path.getmtime(
            BPF_OBJECT
        ) >= os.path.getmtime(BPF_SOURCE)
        if not up_to_date:
            arch = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
            cmd = [clang, "-O2", "-g", "-Wall", "-target", "bpf", f"-I/usr/include/{arch}"]
            cmd += ["-c", BPF_SOURCE, "-o", BPF_OBJECT]
            try:
                subprocess.run(cmd, check=True)
            except (OSError, subprocess.CalledProcessError) as exc:
                print(f"setup: the XDP program did not compile: {exc}")
                return
        if not self.inplace and self.build_lib:
            target = os.path.join(self.build_lib, BPF_OBJECT)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(BPF_OBJECT, target)


extensions = [
    Extension(
        "insane._speedups",
        sources=["insane/_speedups.c"],
        extra_compile_args=["-O2"],
        optional=True,  # without a compiler, insane.protocol.speedups falls back to Python
    )
]
ENGINE_SOURCES = sorted(
    f for f in glob.glob("insane/engine/src/*.c") if not os.path.basename(f).startswith("fuzz_")
)
extensions.append(
    Extension(
        "insane.engine._engine",
        sources=ENGINE_SOURCES,
        depends=glob.glob("insane/engine/src/*.h"),
        libraries=["crypto"],
        extra_compile_args=["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror"]
        + shlex.split(os.environ.get("INSANE_ENGINE_CFLAGS", "")),
        extra_link_args=shlex.split(os.environ.get("INSANE_ENGINE_LDFLAGS", "")),
        optional=True,  # without a compiler or libcrypto's headers, INSANE_ENGINE=python
    )
)
if have_xdp_headers():
    extensions.append(
        Extension(
            "insane._xdp",
            sources=["insane/native/_xdp.c"],
            libraries=["xdp", "bpf"],
            extra_compile_args=["-O2", "-Wall"],
            optional=True,  # without it the AF_XDP transport is unavailable, and says why
        )
    )

dpdk = dpdk_flags()
if dpdk is not None:
    extensions.append(
        Extension(
            "insane._dpdk",
            sources=["insane/native/_dpdk.c"],
            libraries=dpdk[1],
            extra_compile_args=["-O2", "-Wall", *dpdk[0]],
            optional=True,  # without it the DPDK transport is unavailable, and says why
        )
    )

setup(ext_modules=extensions, cmdclass={"build_ext": BuildExtWithBpf})
