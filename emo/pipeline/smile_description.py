"""What a store records of an openSMILE feature set: openSMILE's version and, per feature level, the Smile's
feature set, level and feature names.

Computed in this process when openSMILE is loaded here already (a worker, ``emo predict``), otherwise by this
file run as a script in a child interpreter: importing openSMILE brings pandas and pyarrow, 0.11 GB of resident
memory that the extraction driver, which only describes the arrays, would hold for the whole run. As a script
it imports nothing of emo, so it runs wherever the interpreter can import openSMILE.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

#: seconds the child interpreter may take (about 1 s on a quiet machine: importing openSMILE and pandas)
CHILD_TIMEOUT_S = 300


def describe(feature_set: str, levels: Sequence[str]) -> dict[str, Any]:
    """``{"version": ..., "levels": {level: {"feature_set", "feature_level", "feature_names"}}}``, in this process."""
    import opensmile

    described = {}
    for level in levels:
        smile = opensmile.Smile(
            feature_set=opensmile.FeatureSet[feature_set], feature_level=opensmile.FeatureLevel[level]
        )
        described[level] = {
            "feature_set": smile.feature_set.value,
            "feature_level": smile.feature_level.value,
            "feature_names": list(smile.feature_names),
        }
    return {"version": opensmile.__version__, "levels": described}


@functools.cache
def smile_description(feature_set: str, levels: tuple[str, ...]) -> dict[str, Any]:
    """:func:`describe`, in a child interpreter unless openSMILE is loaded here (once per process)."""
    if "opensmile" in sys.modules:
        return describe(feature_set, levels)
    # -P: the script's directory (emo/pipeline, whose module names are generic) stays off the child's path
    from emo.errors import EmoError  # here, not at the top: the script imports nothing of emo

    try:
        proc = subprocess.run(
            [sys.executable, "-P", __file__, feature_set, *levels],
            capture_output=True,
            text=True,
            check=False,
            timeout=CHILD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        what = f"openSMILE did not describe {feature_set} within {CHILD_TIMEOUT_S} s"
        raise EmoError(f"{what} ({sys.executable})") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise EmoError(f"openSMILE cannot describe {feature_set} with {sys.executable}: {last}")
    return json.loads(proc.stdout)


if __name__ == "__main__":
    print(json.dumps(describe(sys.argv[1], sys.argv[2:])))
