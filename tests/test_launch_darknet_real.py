"""The real AlexeyAB darknet end to end (examples/darknet_real_resume.py): kill -9 twice,
a wiped runtime, the NaN and the truncated cases. About a minute on 2 CPU cores.

Runs when a darknet binary is at hand: $DRIVESYNC_DARKNET, or built (once per machine,
then reused) by ../shared/tools/build-darknet.sh beside the repository, as CI has it;
skipped otherwise. The source tarball's yolov4-tiny.cfg comes from ../shared/third_party.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def _darknet() -> str:
    given = os.environ.get("DRIVESYNC_DARKNET")
    if given:
        return given
    build = SHARED / "tools" / "build-darknet.sh"
    if not build.is_file():
        pytest.skip("no darknet: set DRIVESYNC_DARKNET or put shared/ beside the repository")
    done = subprocess.run(["bash", str(build)], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        pytest.skip(f"darknet did not build: {done.stderr[-500:]}")
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_real_darknet_resumes_across_kills_and_refuses_nan_and_truncated(tmp_path):
    if not list((SHARED / "third_party").glob("darknet-AlexeyAB-*.tar.gz")):
        pytest.skip("no darknet source tarball in ../shared/third_party (its cfg is used)")
    darknet = _darknet()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "darknet_real_resume.py"), "--darknet", darknet,
         "--third-party", str(SHARED / "third_party"), "--dir", str(tmp_path / "run"),
         "--images", "16", "--every", "300", "--max-batches", "1500"],
        env=env, capture_output=True, text=True, timeout=600)
    report = done.stdout[-3000:]
    assert done.returncode == 0, report + done.stderr[-2000:]
    assert "FAIL" not in report and report.count("ok  ") >= 14, report
