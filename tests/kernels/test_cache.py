"""The native kernels' build and cache (issue #21): the build target is a setting that reaches
the compiler and the key; builds for different targets give the same bits; nothing in the
cache is loaded unverified (a planted library's code never runs), and a corrupt library is
built again instead of raising."""

import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from ticketlab import kernels
from ticketlab.export.sparse import to_csr

native = pytest.mark.skipif(not kernels.available(), reason=f"no native kernels: {kernels.unavailable_reason()}")
pytestmark = native

SYMBOLS = "".join(f"void {name}(void) {{}}\n" for name in kernels._SIGNATURES)


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """`library()` afresh with the cache in an empty folder (each test's own, so no library
    loaded earlier in this process shares its path); the usual library again afterwards."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("TICKETLAB_CACHE_DIR", str(folder))
    kernels.library.cache_clear()
    yield folder
    kernels.library.cache_clear()


def reload():
    kernels.library.cache_clear()
    return kernels.library()


def wrapper_compiler(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A CC that logs its arguments and runs the real compiler, or fails while `broken` exists."""
    log, broken, script = tmp_path / "cc.log", tmp_path / "broken", tmp_path / "cc"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n"
                      f"if [ -e {broken} ]; then echo 'error: this compiler is broken' >&2; exit 1; fi\n"
                      f"exec {kernels._compiler()} \"$@\"\n")
    script.chmod(0o755)
    return script, log, broken


def assert_kernels_work():
    """The hand case of test_native: W = [[1, 0, 2], [0, 0, 0], [0, 3, 0]], b = [0.5, 7, -10]."""
    assert kernels.available(), kernels.unavailable_reason()
    weight = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    csr = to_csr(weight)
    x_t = torch.tensor([[1.0, -1.0], [2.0, 0.0], [3.0, 1.0]])
    product = kernels.Csr(csr["crow"], csr["col"], 3).mm(csr["values"], x_t, torch.tensor([0.5, 7.0, -10.0]))
    assert torch.equal(product, torch.tensor([[7.5, 1.5], [7.0, 7.0], [-4.0, -10.0]]))


def x86_targets() -> list[str]:
    """Targets this CPU runs: baseline x86-64 (SSE2, no FMA), x86-64-v3 (AVX2, FMA) where it has them, native."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return []
    flags = set(next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")),
                     "").split())
    v3 = {"avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm"} <= flags
    return ["x86-64", *(["x86-64-v3"] if v3 else []), "native"]


def every_kernel() -> list[torch.Tensor]:
    """Each kernel on random data at batches that take each path (scalar, 8-wide, 32-wide, tails)."""
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(40, 70, generator=g) * (torch.rand(40, 70, generator=g) < 0.2)
    csr = to_csr(weight)
    product, values, bias = kernels.Csr(csr["crow"], csr["col"], 70), csr["values"], torch.randn(40, generator=g)
    out = []
    for batch in (1, 5, 8, 13, 32, 75):
        x_t, grad_t = torch.randn(70, batch, generator=g), torch.randn(40, batch, generator=g)
        out += [product.mm(values, x_t, bias, relu=True), product.sddmm(grad_t, x_t), product.mm_t(values, grad_t),
                kernels.grad_rows(grad_t, torch.relu(grad_t.flip(1).contiguous()), sums=True)[1]]
    out.append(kernels.CsrChain([(product, values, bias, True)])(torch.randn(70, 70, generator=g)))
    return out


def test_builds_for_different_targets_give_the_same_bits(fresh, monkeypatch):
    """FMA or not, AVX2 or SSE2 or whatever native is: every kernel's output, bit for bit
    (no multiply-add is fused, and the order of every sum is written in the source)."""
    targets = x86_targets()
    if len(targets) < 2:
        pytest.skip("needs an x86-64 CPU to run builds for two targets")
    results, keys = {}, set()
    for target in targets:
        monkeypatch.setenv("TICKETLAB_NATIVE_MARCH", target)
        assert reload() is not None, kernels.unavailable_reason()
        results[target] = every_kernel()
        keys.add(kernels.build_key())
    assert len(keys) == len(targets)  # three builds, not one three times
    first = results[targets[0]]
    for target in targets[1:]:
        for index, (a, b) in enumerate(zip(first, results[target])):
            assert torch.equal(a, b), f"output {index}: {targets[0]} and {target} differ by {(a - b).abs().max()}"


def test_the_target_setting_reaches_the_compiler_and_the_key(fresh, tmp_path, monkeypatch):
    target = {"x86_64": "x86-64-v2", "AMD64": "x86-64-v2", "aarch64": "armv8-a"}.get(platform.machine())
    if target is None:
        pytest.skip(f"no known -march target for {platform.machine()}")
    script, log, _ = wrapper_compiler(tmp_path)
    monkeypatch.setenv("CC", str(script))
    monkeypatch.setenv("TICKETLAB_NATIVE_MARCH", target)
    assert reload() is not None, kernels.unavailable_reason()
    key = kernels.build_key()
    assert (fresh / f"csr-{key}.so").is_file()
    assert f"-march={target}" in log.read_text().split() and "-ffp-contract=off" in log.read_text().split()
    monkeypatch.delenv("TICKETLAB_NATIVE_MARCH")
    log.unlink()
    assert reload() is not None and kernels.build_key() != key  # the default, native: another build
    assert "-march=native" in log.read_text().split()


def test_a_bad_or_refused_target_says_which_and_the_way_out(fresh, tmp_path, monkeypatch):
    script, log, _ = wrapper_compiler(tmp_path)
    monkeypatch.setenv("CC", str(script))
    monkeypatch.setenv("TICKETLAB_NATIVE_MARCH", "native -fplugin=evil.so")
    assert reload() is None and not log.exists()  # refused before any compiler runs
    reason = kernels.unavailable_reason()
    assert "TICKETLAB_NATIVE_MARCH='native -fplugin=evil.so' is not a -march target name" in reason
    monkeypatch.setenv("TICKETLAB_NATIVE_MARCH", "no-such-cpu")
    assert reload() is None
    reason = kernels.unavailable_reason()
    assert "could not compile csr.c" in reason and "-march=no-such-cpu" in reason and "TICKETLAB_NATIVE_MARCH" in reason
    assert len(log.read_text().splitlines()) == 1  # an explicit target is not silently dropped


def test_a_build_records_its_hash_and_is_writable_by_its_owner_only(fresh):
    assert reload() is not None
    library = fresh / f"csr-{kernels.build_key()}.so"
    recorded = (fresh / f"{library.name}.sha256").read_text().strip()
    assert recorded == hashlib.sha256(library.read_bytes()).hexdigest()
    assert library.stat().st_mode & 0o022 == 0 and fresh.stat().st_mode & 0o022 == 0
    assert sorted(p.name for p in fresh.iterdir()) == [library.name, f"{library.name}.sha256"]  # no temporaries


# Planted and corrupt libraries: the genuine key comes from a build in another folder, so the
# file at the path tried is one this process has never loaded (a loaded path would be reused).

@pytest.fixture
def planting(fresh, tmp_path, monkeypatch):
    """(the library path the next `library()` loads from, a compiled planted library whose
    constructor creates `marker`, marker), the cache folder made like a genuine one."""
    assert reload() is not None
    name = f"csr-{kernels.build_key()}.so"
    genuine = fresh / name
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    monkeypatch.setenv("TICKETLAB_CACHE_DIR", str(other))
    kernels.library.cache_clear()
    marker = tmp_path / "planted-code-ran"
    planted = compile_library(tmp_path, "planted", '#include <stdio.h>\n__attribute__((constructor)) static void '
                              f'planted(void) {{ FILE *f = fopen("{marker}", "w"); if (f) fclose(f); }}\n{SYMBOLS}')
    put(genuine, other / name)  # a genuine library and its hash, to be tampered with
    return other / name, planted, marker


def compile_library(folder: Path, name: str, source: str) -> Path:
    (folder / f"{name}.c").write_text(source)
    library = folder / f"{name}.so"
    subprocess.run([kernels._compiler(), "-shared", "-fPIC", str(folder / f"{name}.c"), "-o", str(library)], check=True)
    return library


NO_KERNELS = "int nothing(void) { return 0; }\n"


def put(source: Path, target: Path, mode: int = 0o755, hashed: bool = True):
    """`source` at `target` with `mode`, and (with `hashed`) its own correct SHA-256 beside it."""
    target.unlink(missing_ok=True)
    shutil.copy(source, target)
    target.chmod(mode)
    if hashed:
        digest = target.with_name(target.name + ".sha256")
        digest.write_text(hashlib.sha256(source.read_bytes()).hexdigest() + "\n")
        digest.chmod(0o644)


def assert_rebuilt(target: Path, marker: Path):
    assert reload() is not None, kernels.unavailable_reason()
    assert not marker.exists(), "the planted library's code ran"
    assert_kernels_work()
    assert target.with_name(target.name + ".sha256").read_text().strip() == hashlib.sha256(
        target.read_bytes()).hexdigest()


@pytest.mark.parametrize("how", ["genuine hash", "no hash", "own hash, group-writable", "own hash, world-writable",
                                 "own hash, behind a link"])
def test_a_planted_library_is_never_loaded_but_rebuilt(planting, how):
    target, planted, marker = planting
    if how == "genuine hash":  # the recorded hash is the genuine library's
        put(planted, target, hashed=False)
    elif how == "no hash":
        put(planted, target, hashed=False)
        target.with_name(target.name + ".sha256").unlink()
    elif how == "own hash, behind a link":
        put(planted, target)
        target.unlink()
        target.symlink_to(planted)
    else:
        put(planted, target, 0o775 if "group" in how else 0o757)
    assert_rebuilt(target, marker)
    assert not target.is_symlink() and target.stat().st_mode & 0o022 == 0


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to give a file away")
def test_a_library_of_another_user_is_never_loaded(planting):
    target, planted, marker = planting
    put(planted, target)
    os.chown(target, 65534, 65534)
    assert_rebuilt(target, marker)
    assert target.stat().st_uid == os.geteuid()


def test_a_file_of_another_user_is_untrusted(tmp_path, monkeypatch):
    """The owner check alone, for machines where a test cannot give a file away."""
    path = tmp_path / "library.so"
    path.write_bytes(b"")
    path.chmod(0o755)
    assert kernels._untrusted(path, "file") is None
    monkeypatch.setattr(os, "geteuid", lambda: path.stat().st_uid + 1)
    assert "belongs to user" in kernels._untrusted(path, "file")


@pytest.mark.parametrize("content", ["random bytes", "random bytes, hashed", "no kernels, hashed"])
def test_a_corrupt_library_is_rebuilt_not_raised(planting, tmp_path, content):
    """Hashed: it passes verification (as a library corrupted where it was built would), and
    fails only when loaded (not a library) or asked for its kernels (no symbols)."""
    target, _, marker = planting
    if content.startswith("random"):
        corrupt = tmp_path / "corrupt.so"
        corrupt.write_bytes(os.urandom(5000))
    else:
        corrupt = compile_library(tmp_path, "corrupt", NO_KERNELS)
    put(corrupt, target, hashed=content.endswith("hashed"))
    assert_rebuilt(target, marker)


def test_a_corrupt_library_that_cannot_be_rebuilt_turns_the_kernels_off(fresh, tmp_path, monkeypatch):
    script, _, broken = wrapper_compiler(tmp_path)
    monkeypatch.setenv("CC", str(script))
    assert reload() is not None
    target = fresh / f"csr-{kernels.build_key()}.so"
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    monkeypatch.setenv("TICKETLAB_CACHE_DIR", str(other))
    put(compile_library(tmp_path, "corrupt", NO_KERNELS), other / target.name)
    broken.touch()
    assert reload() is None
    assert "could not compile csr.c: error: this compiler is broken" in kernels.unavailable_reason()


@pytest.mark.parametrize("mode", [0o777, 0o775])
def test_a_folder_others_can_write_is_never_loaded_from(planting, mode):
    target, planted, marker = planting
    put(planted, target)
    target.parent.chmod(mode)
    assert reload() is None and not marker.exists()
    reason = kernels.unavailable_reason()
    assert "writable by others" in reason and "chmod go-w" in reason and "TICKETLAB_CACHE_DIR" in reason
