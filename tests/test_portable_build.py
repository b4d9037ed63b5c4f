"""The installed llama.cpp build must run on any x86-64 CPU with AVX2, whatever CPU built it.

Checked on the machine code itself, so the guarantee holds even where the building CPU has no AMX: a
`-march=native` build on a CPU that advertises AMX compiled tile instructions that died with SIGILL
on another machine of the same kind.
"""
from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

AMX = re.compile(r"\b(tilezero|tileloadd\w*|tilestored|tilerelease|ldtilecfg|sttilecfg|tdp\w+ps|tdpb[su]{2}d)\b|%tmm\d")
AVX512 = re.compile(r"%zmm\d|%k[1-7]\b")


def _ggml_cpu_library() -> Path:
    import llama_cpp
    found = sorted((Path(llama_cpp.__file__).parent / "lib").glob("libggml-cpu*.so*"))
    assert found, "llama-cpp-python has no libggml-cpu library"
    return found[0]


def _disassembly() -> str:
    if shutil.which("objdump") is None:
        pytest.skip("objdump (binutils) is not installed")
    return subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(_ggml_cpu_library())],
                          capture_output=True, text=True, check=True).stdout


def _instructions(text: str) -> str:
    """Only the instruction column: symbol names like `tiled_run_microtile` must not count."""
    return "\n".join(line.split("\t", 1)[1] for line in text.splitlines() if line.startswith(" ") and "\t" in line)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 instruction sets only")
def test_installed_llama_cpp_has_no_amx_instruction():
    code = _instructions(_disassembly())
    assert "vfmadd" in code, "the disassembly holds no FMA code at all: wrong library?"
    hits = sorted(set(m.group(0) for m in AMX.finditer(code)))
    assert not hits, f"AMX instructions in {_ggml_cpu_library().name}: {hits[:5]}"


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 instruction sets only")
def test_installed_llama_cpp_needs_no_more_than_avx2():
    code = _instructions(_disassembly())
    assert "%ymm" in code, "no AVX2 code: the build lost its SIMD kernels"
    hits = sorted(set(m.group(0) for m in AVX512.finditer(code)))
    assert not hits, f"AVX-512 registers used in {_ggml_cpu_library().name}: {hits[:5]}"


def test_llama_cpp_reports_a_portable_feature_set():
    import llama_cpp
    info = llama_cpp.llama_print_system_info().decode()
    enabled = {k.strip() for k, v in re.findall(r"(\w+) = (\d)", info) if v == "1"}
    assert not enabled & {"AMX_INT8", "AMX_BF16", "AMX_TILE", "AVX512", "AVX512_VBMI", "AVX512_VNNI"}, info
    if platform.machine() == "x86_64":
        assert "AVX2" in enabled, info
