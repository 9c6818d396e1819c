"""One preset per paper: what each of the five seed papers specifies, as training options (``--preset``).

A preset sets the head, its hyper-parameters, the features and front-ends, the selector, epochs, batch size,
learning rate and schedule, the class set and the metric family the paper reports; any flag the user gives
overrides the preset's value. What a paper leaves open keeps emo's default and is listed in ``open``; what emo
does differently from the paper is listed in ``deviations`` (both go into the README's preset table and into
every run's ``metrics.json``). The split stays emo's honest default (``auto``: the dataset's own split, else
speaker-independent); ``--split stratified`` gives the papers' random 80/20.

The extraction a preset needs (feature tokens and config values) is checked against the store before
training, with a message naming what to re-extract with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from emo.errors import UsageError


@dataclass(frozen=True)
class Preset:
    """A paper's training configuration."""

    name: str
    paper: str
    #: TrainConfig fields the paper fixes (method, hparams, features, selector, epochs, lr, ...)
    train: Mapping[str, Any]
    #: extraction the store must have: ``features`` tokens and ExtractionConfig values (refused otherwise)
    requires: Mapping[str, Any]
    #: extraction values the paper used that a store may lack (a run without them is named a deviation): the
    #: backbone and text model among them, since ResNet and BERT weights may not be reachable offline
    prefers: Mapping[str, Any] = field(default_factory=dict)
    #: class set per dataset adapter (the store's ``dataset.adapter``): names of that adapter's labels
    classes: Mapping[str, Sequence[str]] = field(default_factory=dict)
    #: what ``emo compare --preset`` runs: the paper's comparison table
    compare_methods: Sequence[str] = ()
    compare_unimodal: Sequence[str] = ()
    unimodal_method: str = "early"
    #: what the paper does not say (emo's default is used)
    open: Sequence[str] = ()
    #: where emo differs from the paper, and why
    deviations: Sequence[str] = ()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "paper": self.paper,
            "train": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.train.items()},
            "requires": dict(self.requires),
            "prefers": dict(self.prefers),
            "classes": {k: list(v) for k, v in self.classes.items()},
            "open": list(self.open),
            "deviations": list(self.deviations),
        }


PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    """Make ``preset`` available as ``--preset NAME``."""
    PRESETS[preset.name] = preset
    return preset


register_preset(
    Preset(
        name="seed000",
        paper="Karim & Dronwat, Multimodal Emotion Recognition Using Attention-Based Deep Neural Networks",
        train={
            "method": "hierarchical",  # its default encoders are the paper's: CNN-LSTM audio, face CNN, BiLSTM text
            "modalities": ("audio", "video", "text"),
            "metrics": "macro",
        },
        requires={"features": ("mfcc", "face", "text")},
        prefers={"visual_model": "resnet18", "text_model": "bert-base-uncased"},
        classes={
            "ravdess": ("neutral", "happy", "sad", "angry", "fearful"),
            "crema-d": ("neutral", "happy", "sad", "anger", "fear"),
            "meld": ("neutral", "joy", "sadness", "anger", "fear"),
        },
        compare_methods=("early", "late", "hierarchical"),
        compare_unimodal=("audio", "video", "text"),
        unimodal_method="hierarchical",
        open=(
            "learning rate, batch size and epochs ('chosen on validation performance'): emo's 1e-3, 64, up to 100 "
            "with early stopping (patience 15), which the paper also uses",
            "encoder widths, attention heads and dropout rate: hidden 128, 4 heads, dropout 0.3",
        ),
        deviations=(
            "MiniLM (all-MiniLM-L6-v2) token embeddings when the store was not extracted with BERT "
            "(--text-model bert-base-uncased)",
            "ResNet-18 face embeddings are frozen (extracted once), not fine-tuned with the head",
        ),
    )
)

register_preset(
    Preset(
        name="seed001",
        paper="Kirar et al., Integrating Audio and Visual Features Using Enhanced Deep Learning Techniques",
        train={
            "method": "bilstm-sa",
            "modalities": ("audio", "video"),
            "features": ("audio/ae", "video/summary"),
            "selector": {"joint": "zebra"},
            "metrics": "weighted",
        },
        requires={"features": ("mel", "summary")},
        prefers={"visual_model": "resnet50", "denoise": "spectral-subtraction", "normalize": "peak"},
        classes={"meld": ("joy", "sadness", "surprise")},
        compare_methods=("bilstm-sa", "bilstm", "cnn"),
        open=(
            "autoencoder size and training, BiLSTM width, attention heads, epochs, batch size, learning rate: "
            "emo's defaults (AE bottleneck 64; hidden 128, 4 heads; up to 100 epochs, batch 64, Adam 1e-3)",
            "zebra's population, iterations and classifier: 20 zebras, 30 iterations, 5-NN fitness",
        ),
        deviations=(
            "the paper selects features once before its 80/20 split; emo fits zebra (and the autoencoder) inside "
            "every training split, so no test clip shapes the subset",
            "the audio vector repeats over the BiLSTM steps (the paper feeds the fused vector as a sequence)",
            "the three classes are MELD's joy, sadness and surprise as the paper states (not the sentiment classes)",
        ),
    )
)

register_preset(
    Preset(
        name="seed002",
        paper="Joshi & Khare, A novel multimodal approach ... Text, Speech, and Facial Expression data",
        train={
            "method": "label-fusion",
            "modalities": ("audio", "video", "text"),
            "features": ("audio/mfcc-cnn", "video/face", "text/mean"),
            "selector": {"text": "l1", "audio": "tree", "video": "tree"},
            "metrics": "weighted",
        },
        requires={"features": ("mfcc", "face", "text")},
        prefers={"text_model": "bert-base-uncased"},
        open=(
            "the ResNet's depth ('a pre-trained ResNet (ImageNet)'): the store's backbone is used",
            "the MFCC CNN's layers, the classifiers' widths, epochs, batch size, learning rate: emo's choices "
            "(see audio/mfcc-cnn and label-fusion) and defaults",
            "which three classes: the paper names them only as 0, 1 and 2, so every class of the store is kept "
            "(--classes picks three)",
        ),
        deviations=(
            "BERT text features are MiniLM when the store was not extracted with --text-model bert-base-uncased",
            "the speech CNN is trained as a classifier on each training split's MFCC frames and its penultimate "
            "layer is the speech feature (the paper does not say how its CNN is trained)",
        ),
    )
)

register_preset(
    Preset(
        name="seed003",
        paper="Kumar, Aruldoss & Wynn, Cross-Modal Attention Fusion (MTI 2025)",
        train={
            "method": "cross-tucker",
            "hparams": {"audio_frontend": "mel-cnn", "mel_frames": 256, "heads": 4, "dropout": 0.5},
            "modalities": ("audio", "video"),
            "features": ("audio/mel", "video/face"),
            "batch_size": 128,
            "lr": 1e-3,
            "weight_decay": 1e-4,
            "epochs": 100,
            "metrics": "macro",
        },
        requires={"features": ("mel", "face")},
        prefers={"visual_model": "resnet18", "n_mels": 128},
        open=(
            "learning rate 'from 1e-4 to 1e-3' and 50-100 epochs: emo uses 1e-3 and up to 100 (early stopping on "
            "the validation split)",
            "CNN depth and Tucker ranks: three conv blocks 32-64-128, ranks (8, 16, 16); T = the store's "
            "--align-steps (32)",
        ),
        deviations=(
            "no audio or video augmentation (pitch shift, time stretch, noise; flips, rotation, crops): features "
            "are cached, augmentation would need re-extraction",
            "ResNet-18 face embeddings are frozen (extracted once), not fine-tuned",
            "the 'GRU for common temporal dynamics' mentioned in a results remark is not described and not built",
        ),
    )
)

register_preset(
    Preset(
        name="seed004",
        paper="Makhmudov, Kultimuratov & Cho, Attention Mechanisms in BERT and CNN Architectures",
        train={
            "method": "attention",
            "hparams": {"audio_encoder": "speech-cnn", "text_encoder": "dialogue-bigru", "n": 250, "dropout": 0.3},
            "modalities": ("audio", "text"),
            "features": ("audio/mel", "text/mean"),
            "epochs": 300,
            "batch_size": 32,
            "lr": 5e-4,
            "lr_schedule": "inverse-time:0.0001",
            "weight_decay": 1e-4,
            "metrics": "weighted",
        },
        requires={"features": ("mel", "text")},
        prefers={"n_mels": 128, "text_model": "bert-base-uncased"},
        classes={"meld": ("joy", "anger", "disgust", "sadness", "surprise", "neutral")},
        open=(
            "the speech CNN's input length: the first 400 mel frames (4 s) of each clip",
            "early stopping: none in the paper (300 epochs); emo stops on the validation loss (patience 15) when "
            "the split has a validation part",
        ),
        deviations=(
            "the text module is trained jointly with the rest, not first on its own (the paper trains it for 300 "
            "epochs before the whole model)",
            "BERT utterance vectors are MiniLM when the store was not extracted with --text-model "
            "bert-base-uncased",
            "the paper's 'WA' is mean recall (its Eq. 6 and text): compare it with emo's UA; emo's WA is accuracy, "
            "as the other papers use the term",
        ),
    )
)


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown --preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def preset_config(name: str, base: Any, given: Sequence[str] = ()) -> Any:
    """``base`` (a TrainConfig) with the preset's training values, except the fields in ``given`` (set
    explicitly by the user, who wins). Hyper-parameters merge key by key, the user's on top. No paper
    standardises per speaker: a preset standardises on the training split only unless it says otherwise."""
    preset = get_preset(name)
    values = {"standardize": "global"} | dict(preset.train)
    if "method" in given and base.method != values.get("method"):
        values.pop("hparams", None)  # the preset's hyper-parameters belong to its own head
    if "hparams" in given:
        values["hparams"] = dict(values.get("hparams", {})) | dict(base.hparams)
        given = [g for g in given if g != "hparams"]
    changes = {k: v for k, v in values.items() if k not in given}
    return dataclasses.replace(base, preset=name, **changes)


def check_extraction(preset: Preset, store_config: Mapping[str, Any], location: str) -> list[str]:
    """Refuse a store that lacks what ``preset`` needs; return the unmet preferences (named deviations)."""
    problems, flags = [], []
    features = set(store_config.get("features", ()))
    missing = [f for f in preset.requires.get("features", ()) if f not in features]
    if missing:
        problems.append(f"features {', '.join(missing)}")
        flags.append("--features " + ",".join(sorted(features | set(missing))))
    for key, want in preset.requires.items():
        if key == "features" or store_config.get(key) == want:
            continue
        problems.append(f"{key} {want} (the store has {store_config.get(key)})")
        flags.append(f"--{key.replace('_', '-')} {want}")
    if problems:
        raise UsageError(
            f"--preset {preset.name} needs a store extracted with {'; '.join(problems)}; {location} was not: "
            f"re-extract with {' '.join(flags)}"
        )
    unmet = [
        f"extracted without {key} {want} (the store has {store_config.get(key)})"
        for key, want in preset.prefers.items()
        if store_config.get(key) != want
    ]
    if store_config.get("trim_silence_db") is not None:  # emo's default; none of the papers trims
        unmet.append(
            f"audio features without the silence around the speech (--trim-silence "
            f"{store_config['trim_silence_db']:g}; the paper keeps it: extract with --trim-silence off to follow it)"
        )
    return unmet


def preset_classes(preset: Preset, adapter: str) -> tuple[str, ...] | None:
    """The preset's class set for a store of dataset ``adapter``, or None to keep every class."""
    classes = preset.classes.get(adapter)
    return tuple(classes) if classes else None


def readme_table() -> str:
    """The README's table: per preset, what it sets, what the paper leaves open and every deviation."""
    lines = [
        "| preset | paper | emo runs | paper leaves open (emo's choice) | deviations from the paper |",
        "| --- | --- | --- | --- | --- |",
    ]
    for p in PRESETS.values():
        sets = ", ".join(f"`{k}={_short(v)}`" for k, v in p.train.items())
        classes = "; ".join(f"{k}: {', '.join(v)}" for k, v in p.classes.items())
        if classes:
            sets += f"; classes {classes}"
        sets += f"; needs extraction {_short(dict(p.requires))}"
        if p.prefers:
            sets += f"; the paper extracted with {_short(dict(p.prefers))} (a store without it runs, named a deviation)"
        lines.append(
            f"| `{p.name}` | {p.paper} | {sets} | {'; '.join(p.open)} | {'; '.join(p.deviations)} |"
        )
    return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)
