"""The extraction configuration: every option that changes a feature value, hashed into the store.

Options that only change how a run is executed (workers, scheduler, batch size, device) are not part of it,
so a store extracted on a laptop and one extracted on a GPU cluster with the same options have the same hash.
Model files are part of it by content: :func:`emo.pipeline.extractors.pin_config` fills in the sha256 of the
visual weights file and of the text model's weights before a run, so replacing a file changes the hash.

Each extractor owns its options: a :class:`Section` in its own module, registered with :func:`register_section`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from emo.errors import UsageError
from emo.registry import Registry

DENOISE_METHODS = ("none", "spectral-subtraction")
NORMALIZE_METHODS = ("none", "peak", "rms")


#: Leading and trailing audio quieter than this many dB below the clip's loudest frame is left out of the audio
#: features (``--trim-silence``): on RAVDESS about half of every clip is silence before and after the sentence.
TRIM_SILENCE_DB = 30.0
#: Fields added after stores were written, with the value that matches what those stores did: a recorded config
#: without the field is read with this value, and a config with this value records no field, so that it keeps the
#: hash of those stores (they were not trimmed; they detected faces in every frame; their backbones ran in fp32, in
#: torch).
LEGACY_VALUES: dict[str, Any] = {
    "trim_silence_db": None,
    "face_track": 1,
    "visual_precision": "fp32",
    "visual_runtime": "torch",
}


#: Options whose ``auto`` is a measured default that may change between emo versions (the keyframe interval of
#: face tracking, the backbone's numerics). Resuming a store that holds clips, ``auto`` is what that store was
#: extracted with (:func:`resume_choices`).
AUTO_OPTIONS = ("face_track", "visual_precision", "visual_runtime")
#: The options among :data:`AUTO_OPTIONS` whose ``auto`` is a choice per backbone.
_BACKBONE_AUTO_OPTIONS = ("visual_precision", "visual_runtime")


def _auto_now(key: str, visual_model: str) -> Any:
    """What ``auto`` means today for option ``key``."""
    if key == "face_track":
        from emo.pipeline.extractors.faces import DEFAULT_FACE_TRACK

        return DEFAULT_FACE_TRACK
    from emo.pipeline.backbones import get_backbone

    backbone = get_backbone(visual_model)
    return backbone.precision if key == "visual_precision" else backbone.runtime


def resume_choices(values: dict[str, Any], recorded: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """``values`` (option name -> value) with each :data:`AUTO_OPTIONS` left at ``auto`` set to what the config
    ``recorded`` in a store holds (an absent key: its :data:`LEGACY_VALUES`), so that running the same command
    again resumes a store extracted before ``auto`` changed; and a note per option so set. The backbone's
    numerics only for the backbone the store was extracted with: their ``auto`` is a choice per backbone (another
    one is refused as another configuration anyway)."""
    if recorded is None:
        return values, []
    same_backbone = values.get("visual_model") == recorded.get("visual_model")
    out, notes = dict(values), []
    for key in AUTO_OPTIONS:
        if out.get(key) != "auto" or (key in _BACKBONE_AUTO_OPTIONS and not same_backbone):
            continue
        out[key] = recorded.get(key, LEGACY_VALUES[key])
        if out[key] != _auto_now(key, str(values.get("visual_model"))):  # said only where not what auto means now
            notes.append(f"--{key.replace('_', '-')} auto is {out[key]}, as the store was extracted")
    return out, notes


def option(default: Any, help: str = "", **cli: Any) -> Any:
    """A field of a :class:`Section`: its default and how ``emo extract`` offers it (``help``; ``flag`` when the
    option is not ``--field-name``; ``type``, ``metavar``, ``is_flag``; ``choices``, the values offered;
    ``parse``, a function from the option's text to the value that raises ``ValueError`` with a message;
    ``cli=False`` for a field set only in code, such as a sha256 pinned before a run)."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass(frozen=True)
class Section:
    """The options of one extractor (or of the extractors sharing one front-end), owned by its module and
    registered with :func:`register_section`. A config is the shared fields plus one section of each kind.

    Section fields are recorded flat, beside the shared fields, in a store's config (their names are unique
    across sections): a config's hash does not depend on which section a field lives in, so the hashes of
    stores written before sections existed stay valid. ``__post_init__`` normalises and validates.
    """

    name: ClassVar[str]
    #: tokens whose extraction records this section; empty: recorded always (as every field was before the
    #: opt-in ``ssl`` token existed, whose fields are recorded only when it is extracted)
    recorded_with: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}


S = TypeVar("S", bound=Section)

#: Every section kind: an extractor module registers its options with ``@register_section``.
SECTIONS: Registry[type[Section]] = Registry("config section")


def register_section(cls: type[S]) -> type[S]:
    """Class decorator: a section every :class:`ExtractionConfig` holds (its defaults unless given)."""
    return SECTIONS.register(cls.name)(cls)


def section_classes() -> list[type[Section]]:
    """Every registered section kind (importing the extractors registers theirs)."""
    import emo.pipeline.extractors  # noqa: F401  (importing the extractors registers their sections)

    return list(SECTIONS.values())


def _default_tokens() -> tuple[str, ...]:
    from emo.pipeline.extractors import default_tokens

    return default_tokens()


@dataclass(frozen=True, init=False)
class ExtractionConfig:
    """What to compute and how: the fields every extractor shares (tokens, the audio front-end, the time grid)
    plus one :class:`Section` per extractor kind. Defaults follow DESIGN.md §4 (25 ms / 10 ms frames, 16 kHz,
    T = 32 steps), plus the trimming of leading and trailing silence below 30 dB under the clip's peak before
    audio features; each section documents its own (40 MFCC, 128 mels, 5 fps MTCNN, ResNet-18, MiniLM...).

    Built from flat keyword arguments, the recorded form: ``ExtractionConfig(features=("mfcc",), n_mfcc=20)``
    puts ``n_mfcc`` into the MFCC section; :meth:`section` reads one back.
    """

    features: tuple[str, ...]
    sample_rate: int
    win_ms: float
    hop_ms: float
    n_fft: int
    align_steps: int
    denoise: str  # seed 001's spectral subtraction before feature extraction
    normalize: str  # peak: to -1 dBFS; rms: to -20 dBFS (seed 001's amplitude normalisation)
    trim_silence_db: float | None  # None: keep the leading and trailing silence
    sections: tuple[Section, ...]

    def __init__(
        self,
        features: Sequence[str] | None = None,
        sample_rate: int = 16000,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        n_fft: int = 512,
        align_steps: int = 32,
        denoise: str = "none",
        normalize: str = "none",
        trim_silence_db: float | None = TRIM_SILENCE_DB,
        sections: Sequence[Section] = (),
        **options: Any,
    ) -> None:
        # features=None: the tokens extracted by default (every registered token but the opt-in ones)
        shared = {
            "features": _default_tokens() if features is None else features,
            "sample_rate": sample_rate,
            "win_ms": win_ms,
            "hop_ms": hop_ms,
            "n_fft": n_fft,
            "align_steps": align_steps,
            "denoise": denoise,
            "normalize": normalize,
            "trim_silence_db": trim_silence_db,
        }
        for key, value in shared.items():
            object.__setattr__(self, key, value)
        given = {s.name: s for s in sections}
        built = []
        for cls in section_classes():
            own = {f.name for f in fields(cls)}
            values = {k: options.pop(k) for k in list(options) if k in own}
            base = given.get(cls.name)
            built.append(dataclasses.replace(base, **values) if base is not None else cls(**values))
        if options:
            raise TypeError(f"ExtractionConfig got unexpected keyword argument(s): {', '.join(sorted(options))}")
        object.__setattr__(self, "sections", tuple(sorted(built, key=lambda s: s.name)))
        self._validate()

    def _validate(self) -> None:
        # order-free: --features mfcc,mel and mel,mfcc are the same configuration (and hash)
        object.__setattr__(self, "features", tuple(sorted(dict.fromkeys(self.features))))
        if self.denoise not in DENOISE_METHODS:
            raise UsageError(f"unknown --denoise {self.denoise!r}; choose one of: {', '.join(DENOISE_METHODS)}")
        if self.normalize not in NORMALIZE_METHODS:
            raise UsageError(f"unknown --normalize {self.normalize!r}; choose one of: {', '.join(NORMALIZE_METHODS)}")
        if self.trim_silence_db is not None:
            if not self.trim_silence_db > 0:
                raise UsageError(f"--trim-silence must be a positive number of dB or 'off', got {self.trim_silence_db}")
            object.__setattr__(self, "trim_silence_db", float(self.trim_silence_db))
        if self.align_steps < 1:
            raise UsageError("--align-steps must be at least 1")
        if self.sample_rate < 8000:
            raise UsageError("--sample-rate must be at least 8000 Hz")
        if not self.features:
            raise UsageError("no features requested")

    def section(self, cls: type[S]) -> S:
        """This config's section of kind ``cls`` (e.g. ``config.section(MfccOptions).n_mfcc``)."""
        for s in self.sections:
            if s.name == cls.name:
                return s  # type: ignore[return-value]
        raise KeyError(cls.name)

    def value(self, key: str) -> Any:
        """The value of the flat field ``key``, shared or in its section (as :meth:`to_dict` records it)."""
        if key in _SHARED:
            return getattr(self, key)
        for s in self.sections:
            if key in {f.name for f in fields(s)}:
                return getattr(s, key)
        raise KeyError(key)

    @property
    def win_length(self) -> int:
        return round(self.sample_rate * self.win_ms / 1000)

    @property
    def hop_length(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    def to_dict(self) -> dict[str, Any]:
        """The recorded form: shared fields and every recorded section's fields, flat (what a store keeps)."""
        d: dict[str, Any] = {key: getattr(self, key) for key in _SHARED}
        d["features"] = list(self.features)
        for s in self.sections:
            if s.recorded_with and not set(s.recorded_with) & set(self.features):
                continue
            d |= s.to_dict()
        for key, legacy in LEGACY_VALUES.items():
            if key in d and d[key] == legacy:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExtractionConfig:
        """Rebuild a config recorded in a store (unknown keys are an error: they come from a newer emo)."""
        names = set(_SHARED) | {f.name for section in section_classes() for f in fields(section)}
        unknown = set(data) - names
        if unknown:
            raise UsageError(f"extraction config has keys this emo does not know: {', '.join(sorted(unknown))}")
        values = dict(data)
        for key, legacy in LEGACY_VALUES.items():
            if key in names:
                values.setdefault(key, legacy)
        for key, value in values.items():
            if isinstance(value, list):
                values[key] = tuple(value)
        return cls(**values)

    def hash(self) -> str:
        """Stable identity of the configuration (sha256 of its canonical JSON, 16 hex digits)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


_SHARED = tuple(f.name for f in fields(ExtractionConfig) if f.name != "sections")
