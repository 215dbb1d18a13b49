"""`keep_freed_memory`: a forward pass's large temporaries re-use freed pages instead of faulting in fresh ones;
`for_image` gives images above a megapixel glibc's own behaviour back."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import resource, sys, torch
from deepfill_min.allocator import for_image, keep_freed_memory
applied = keep_freed_memory()
x = torch.ones(1, 48, 512, 512)
def work():  # 48 MiB temporaries (a padded copy, an intermediate), as a forward pass at 512² makes them
    return float((torch.nn.functional.pad(x, (0, 1, 0, 1)) * 2 + 1).sum())
with for_image(int(sys.argv[1])):
    for _ in range(3):
        work()
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        work()
    print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


def _probe(switch: str | None, pixels: int = 512 * 512) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if k != "DEEPFILL_MIN_KEEP_FREED_MEMORY"}
    if switch is not None:
        env["DEEPFILL_MIN_KEEP_FREED_MEMORY"] = switch
    out = subprocess.run([sys.executable, "-c", PROBE, str(pixels)], capture_output=True, text=True, env=env,
                         check=True)  # fmt: skip
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_memory_is_reused_and_the_switch_turns_it_off():
    kept, kept_faults = _probe(None)
    default, default_faults = _probe("0")
    assert kept and not default
    # glibc's default maps every temporary above 32 MiB (its largest adaptive mmap threshold) afresh, one fault per
    # 4 KiB page (about 370,000 here); kept memory is re-used (a few new 48 MiB regions as the heap fragments)
    assert kept_faults * 4 < default_faults, (kept_faults, default_faults)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_images_above_a_megapixel_get_large_requests_mapped_afresh():
    _, small = _probe(None, 1024 * 1024)
    kept, large = _probe(None, 1024 * 1024 + 1)
    assert kept and small * 4 < large, (small, large)
