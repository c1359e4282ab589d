"""Hostile files are refused without inflating them, measured where a peak can be measured: in a
child process that does nothing but read the file, against the same child reading a small image,
with a control child that does inflate the file (so the measurement is shown to see it)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BOUND_MIB = 40
"""Peak growth allowed over the small-image child (the bombs inflate to 144-200 MiB)."""

PEAK = "[int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]"
"""The process's own peak resident set (KiB). Not ``ru_maxrss``: Linux keeps the forking parent's
peak in it across ``execve``, so a child of a large test process would report the parent's peak."""

CHILD = """
import sys
from medklip.data.image_io import read_image
from medklip.errors import ImageTooLargeError
try:
    read_image(sys.argv[1])
    outcome = "read"
except ImageTooLargeError:
    outcome = "refused"
print(outcome, PEAK)
""".replace("PEAK", PEAK)
INFLATE = {
    "dicom": "import pydicom; pydicom.dcmread(sys.argv[1]).pixel_array",
    "jpeg": "from PIL import Image; Image.MAX_IMAGE_PIXELS = None; Image.open(sys.argv[1]).load()",
}


def child_peak(path: Path, code: str = CHILD) -> tuple[str, float]:
    """(what the child printed first, its peak RSS in MiB)."""
    if code is not CHILD:
        code = f"import sys\nimport medklip.data.image_io\n{code}\nprint('inflated', {PEAK})"
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    word, kib = done.stdout.split()[-2:]
    return word, int(kib) / 1024


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> float:
    small = tmp_path_factory.mktemp("small") / "small.png"
    Image.fromarray(np.full((64, 64), 100, np.uint8)).save(small)
    word, peak = child_peak(small)
    assert word == "read"
    return peak


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from tests.data.test_dicom import make, save

    folder = tmp_path_factory.mktemp("bombs")
    ds = make(np.zeros((10_000, 10_000), np.uint16))  # 200 MB of pixels, ~200 KB deflated
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    dicom = Path(save(ds, folder / "bomb.dcm"))
    del ds
    jpeg = folder / "huge.jpg"  # docs/robustness.md: a 12,000 x 12,000 JPEG (144 MB decoded)
    Image.new("L", (12_000, 12_000), 90).save(jpeg, quality=50)
    assert dicom.stat().st_size < 1_000_000 and jpeg.stat().st_size < 5_000_000
    return {"dicom": dicom, "jpeg": jpeg}


@pytest.mark.parametrize("kind", ["dicom", "jpeg"])
def test_a_bomb_is_refused_without_inflating_it(kind: str, bombs, baseline: float) -> None:
    word, peak = child_peak(bombs[kind])
    assert word == "refused"
    print(f"{kind}: refused at +{peak - baseline:.1f} MiB over the small-image child")
    assert peak - baseline < BOUND_MIB, (peak, baseline)
    # the control: a child that decodes the same file peaks far above the bound
    word, inflated = child_peak(bombs[kind], INFLATE[kind])
    print(f"{kind}: decoded at +{inflated - baseline:.1f} MiB (control)")
    assert word == "inflated" and inflated - baseline > 3 * BOUND_MIB, (inflated, baseline)
