"""Config files: --write-default-config prints a commented default, --config FILE (TOML or YAML) sets options that
flags override, and the options a run or store was made with are written beside it, so --config reproduces it."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import run_emo
from test_train import synthetic_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_store(tmp_path_factory.mktemp("config") / "synthetic.zarr")


@pytest.mark.parametrize("fmt", ["toml", "yaml"])
def test_default_config_is_commented_and_parses(fmt: str) -> None:
    for command in ("extract", "fuse", "compare"):
        proc = run_emo(command, f"--write-default-config={fmt}")
        assert proc.returncode == 0, proc.stderr
        text = proc.stdout
        # every option is there with its help and default, all commented out: the file as printed changes nothing
        assert ("# epochs = 100" if fmt == "toml" else "# epochs: 100") in text or command == "extract"
        assert ("# fps = 5.0" if fmt == "toml" else "# fps: 5.0") in text or command != "extract"
        assert "storage-option" not in text and "overwrite" not in text  # credentials, destructive switches
        parsed = tomllib.loads(text) if fmt == "toml" else yaml.safe_load(text)
        assert not parsed
        # uncommented, each setting is valid
        sep = " = " if fmt == "toml" else ": "
        settings = re.findall(rf"^# ([a-z][a-z0-9-]*{sep}.*)\n\n", text, flags=re.M)  # an entry ends with it
        body = "\n".join(line for line in settings if "(no default)" not in line)
        values = tomllib.loads(body) if fmt == "toml" else yaml.safe_load(body)
        assert len(values) > 10


def test_fuse_from_a_config_file_flags_override_and_the_run_records_it(store: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "lab.yaml"
    cfg.write_text(f"store: {store}\nmethod: early\nepochs: 50\nsplit: speaker\nhparam: [hidden=16]\nseeds: 2\n")
    run = tmp_path / "run"
    proc = run_emo("fuse", "--config", str(cfg), "--epochs", "7", "-o", str(run), "--json")
    assert proc.returncode == 0, proc.stderr
    config = json.loads((run / "metrics.json").read_text())["config"]
    assert config["method"] == "early" and config["epochs"] == 7 and config["seeds"] == 2  # the flag wins
    assert config["hparams"] == {"hidden": 16}
    used = yaml.safe_load((run / "fuse-config.yaml").read_text())  # the format of the file it was given
    assert used["epochs"] == 7 and used["store"] == str(store) and used["output"] == str(run)
    assert "lr" not in used and "# lr: 0.001" in (run / "fuse-config.yaml").read_text()  # defaults as comments
    # the recorded file reproduces the run
    again = run_emo("fuse", "--config", str(run / "fuse-config.yaml"), "-o", str(tmp_path / "again"), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["ua"] == json.loads(proc.stdout)["ua"]


def test_config_file_errors_name_the_problem(store: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('method = "early"\nepoch = 3\n')
    proc = run_emo("fuse", "--config", str(bad), "--store", str(store), "-o", str(tmp_path / "r"))
    assert proc.returncode == 2 and "unknown option(s) epoch" in proc.stderr and "epochs" in proc.stderr
    bad.write_text('method = "early\n')
    proc = run_emo("fuse", "--config", str(bad), "--store", str(store), "-o", str(tmp_path / "r"))
    assert proc.returncode == 2 and "not valid TOML" in proc.stderr
    bad.write_text('epochs = "many"\n')
    proc = run_emo("fuse", "--config", str(bad), "--store", str(store), "--method", "early", "-o", str(tmp_path / "r"))
    assert proc.returncode == 2 and "'many' is not a valid integer" in proc.stderr
    txt = tmp_path / "cfg.json"
    txt.write_text("{}")
    proc = run_emo("fuse", "--config", str(txt), "--store", str(store), "-o", str(tmp_path / "r"))
    assert proc.returncode == 2 and ".toml, .yaml or .yml" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_extract_from_a_config_file(small_demo_dir: Path, tmp_path: Path, scheduler: str) -> None:
    out = tmp_path / "s.zarr"
    cfg = tmp_path / "extract.toml"
    cfg.write_text(f'dataset-dir = "{small_demo_dir}"\noutput = "{out}"\nfeatures = "mfcc,egemaps"\n'
                   "n-mfcc = 20\n")
    proc = run_emo("extract", "--config", str(cfg), "--scheduler", scheduler, "--n-mfcc", "13", "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(run_emo("store", "info", str(out), "--json").stdout)
    text = json.dumps(info)
    assert '"n_mfcc": 13' in text and "audio/egemaps" in text and "video/face" not in text
    used = tomllib.loads((tmp_path / "s.zarr.extract-config.toml").read_text())
    assert used["features"] == "mfcc,egemaps" and used["n-mfcc"] == 13 and used["scheduler"] == scheduler
    assert used["dataset-dir"] == str(small_demo_dir) and "fps" not in used


def test_credentials_in_urls_are_never_written(tmp_path: Path) -> None:
    import click

    from emo.commands.config_file import write_used_config
    from emo.features_store.location import redact_argv

    @click.command()
    @click.option("--store")
    @click.option("--log-to", multiple=True)
    def command(store: str, log_to: tuple[str, ...]) -> None:
        pass

    argv = ["--store", "s3://user:secret-pw@bucket/s.zarr", "--log-to", "mlflow=https://h/x?token=secret-token"]
    ctx = command.make_context("fuse", list(argv))
    text = write_used_config(ctx, tmp_path / "fuse-config.toml", "test").read_text()
    assert 'store = "s3://***@bucket/s.zarr"' in text and '"mlflow=https://h/x?***"' in text
    provenance = " ".join(redact_argv(["emo", "fuse", *argv]))  # the command metrics.json records
    for secret in ("secret-pw", "secret-token"):
        assert secret not in text and secret not in provenance


def test_write_default_config_after_config_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("epochs = 3\n")
    proc = run_emo("fuse", "--write-default-config", "--config", str(cfg))
    assert proc.returncode == 2 and "give --config before --write-default-config" in proc.stderr
    proc = run_emo("fuse", "--config", str(cfg), "--write-default-config")
    assert proc.returncode == 0 and "\nepochs = 3\n" in proc.stdout
