"""One frozen config for a run: data, model, noise levels, training and sampling.

Configs are data (score_sde style): named presets live in `PRESETS`, command lines change
them with `--set section.key=value`, and every run folder holds the config as JSON so
that it can be loaded back exactly. This module is the only place defaults live.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field, fields, replace
from typing import Any, Iterable, Mapping, Sequence

from keras_ncsn.errors import ConfigError
from keras_ncsn.io import atomic_write_text

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
CONVENTIONS = ("paper", "reference_code", "consistent")
INITS = ("uniform", "gaussian")
# Samplers: annealed Langevin dynamics (Algorithm 1) or the VE ancestral sampler, the
# generative chain of the likelihood bound (keras_ncsn.likelihood).
METHODS = ("annealed_langevin", "ancestral")
# Settings of annealed Langevin dynamics that the ancestral sampler has no use for.
LANGEVIN_ONLY = ("steps_per_level", "step_size", "convention", "init", "denoise")
LR_SCHEDULES = ("constant", "cosine")
# Training objectives: denoising score matching, sliced score matching, and its
# variance-reduced form (keras_ncsn.losses; docs/reproducing_the_paper.md).
OBJECTIVES = ("dsm", "ssm", "ssm_vr")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _check_choices(section: Any, prefix: str, choices: Mapping[str, Sequence[str]]) -> None:
    """Each named field of `section` must be one of its choices."""
    for name, allowed in choices.items():
        value = getattr(section, name)
        _check(value in allowed, f"{prefix}.{name} must be one of {', '.join(allowed)}, "
                                 f"got {value!r}")


def _check_positive(section: Any, prefix: str, names: Iterable[str]) -> None:
    """Each named field of `section` must be > 0."""
    for name in names:
        _check(getattr(section, name) > 0, f"{prefix}.{name} must be > 0")


@dataclass(frozen=True)
class DataConfig:
    """Where images come from and how they are preprocessed.

    `dataset` is "embedded" (the MNIST subset shipped in the package), a
    tensorflow-datasets name (mnist, fashion_mnist, cifar10, celeb_a), or "files".
    `data_dir` is a folder of IDX files or images, an .npz/.npy file, or the tfds data dir.
    """

    dataset: str = "embedded"
    data_dir: str = ""
    image_size: int = 28
    channels: int = 1
    random_flip: bool = False
    dequantize: bool = True
    center_crop: int = 0
    eval_fraction: float = 0.05
    eval_images: int = 1000
    max_train_images: int = 0
    shuffle_buffer: int = 10_000
    download: bool = False

    def __post_init__(self) -> None:
        _check(bool(self.dataset), "data.dataset must not be empty")
        _check(self.dataset != "embedded" or not self.data_dir,
               f"data.dataset=embedded reads the MNIST subset shipped in the package, not "
               f"data.data_dir={self.data_dir}: leave out one of them (data.dataset=files, "
               f"or no --dataset, reads the path)")
        _check(self.image_size >= 4 and self.image_size % 2 == 0,
               f"data.image_size must be an even number >= 4, got {self.image_size}")
        _check(self.channels in (1, 3), f"data.channels must be 1 or 3, got {self.channels}")
        _check(self.center_crop >= 0, "data.center_crop must be >= 0 (0 means no crop)")
        _check(0.0 < self.eval_fraction < 1.0, "data.eval_fraction must be in (0, 1)")
        _check(self.eval_images > 0, "data.eval_images must be > 0")
        _check(self.max_train_images >= 0, "data.max_train_images must be >= 0 (0 means all)")
        _check(self.shuffle_buffer > 0, "data.shuffle_buffer must be > 0")


@dataclass(frozen=True)
class ModelConfig:
    """CondRefineNetDilated width and the optional NCSNv2 output scaling."""

    ngf: int = 64
    scale_by_sigma: bool = False

    def __post_init__(self) -> None:
        _check(self.ngf >= 2, f"model.ngf must be >= 2, got {self.ngf}")


@dataclass(frozen=True)
class NoiseConfig:
    """Geometric noise levels sigma_1 > ... > sigma_L."""

    sigma_begin: float = 1.0
    sigma_end: float = 0.01
    num_levels: int = 10

    def __post_init__(self) -> None:
        _check(self.num_levels >= 1, "noise.num_levels must be >= 1")
        _check(self.sigma_end > 0, "noise.sigma_end must be > 0")
        _check(self.sigma_begin >= self.sigma_end,
               "noise.sigma_begin must be >= noise.sigma_end")
        _check(self.num_levels > 1 or self.sigma_begin == self.sigma_end,
               "a single noise level needs noise.sigma_begin == noise.sigma_end")


@dataclass(frozen=True)
class TrainConfig:
    """Objective, optimiser, schedule, checkpointing and numerics of training.

    `objective` "dsm" is the paper's denoising score matching; "ssm" / "ssm_vr" is sliced
    score matching (plain / variance-reduced, Gaussian projections) of the data perturbed
    at each sample's noise level, weighted by sigma^2 like DSM.
    `seed` fixes the initial weights, the data order and the training noise.
    The learning rate rises linearly over the first `warmup_fraction` of the steps, then
    stays (`lr_schedule` "constant") or decays to 0 at `steps` ("cosine"), so that short
    runs end on small steps instead of at Adam's noise floor. The schedule follows `steps`,
    also when a resumed run raises it.
    `time_budget` (minutes, 0 = off) bounds the whole fit command: after two logging chunks
    training measures its speed and, if `steps` would not fit with the held-out loss and
    the final grid, lowers `steps` so the command ends in about 95% of the budget; at each
    later chunk end it decides again with the speed so far, lowering or raising the last
    step (never past `steps`); the schedule then decays to 0 at the step trained last.
    Each training sample's noise level is drawn uniformly (the paper's) unless `level_focus`
    (a sigma, 0 = off) is set: then levels near it are drawn more often, with log-sigma
    weights of std `level_focus_width` (`keras_ncsn.noise.level_probabilities`). Held-out
    losses always draw levels uniformly, so they compare across settings.
    """

    objective: str = "dsm"
    batch_size: int = 128
    steps: int = 200_000
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"
    warmup_fraction: float = 0.0
    beta_1: float = 0.9
    ema_momentum: float = 0.0
    clip_norm: float = 0.0
    jit_compile: bool = False
    precision: str = "float32"
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    log_every: int = 100
    eval_draws: int = 4
    time_budget: float = 0.0
    level_focus: float = 0.0
    level_focus_width: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        _check_choices(self, "train", {"objective": OBJECTIVES, "lr_schedule": LR_SCHEDULES,
                                       "precision": PRECISIONS})
        _check_positive(self, "train", ("batch_size", "steps", "learning_rate",
                                        "checkpoint_every", "keep_checkpoints", "log_every",
                                        "eval_draws"))
        _check(0.0 <= self.warmup_fraction < 1.0,
               f"train.warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        _check(0.0 <= self.beta_1 < 1.0, "train.beta_1 must be in [0, 1)")
        _check(0.0 <= self.ema_momentum < 1.0,
               "train.ema_momentum must be in [0, 1) (0 turns EMA off)")
        _check(self.clip_norm >= 0, "train.clip_norm must be >= 0 (0 turns clipping off)")
        _check(0 <= self.time_budget < float("inf"),
               "train.time_budget must be a finite number of minutes >= 0 (0 turns it off)")
        _check(0 <= self.level_focus < float("inf"),
               "train.level_focus must be a finite sigma >= 0 (0 draws levels uniformly)")
        _check(0 < self.level_focus_width < float("inf"),
               "train.level_focus_width must be a finite number > 0")
        _check(self.level_focus > 0 or self.level_focus_width == 1.0,
               "train.level_focus_width has no effect while train.level_focus is 0 (levels "
               "are drawn uniformly): set train.level_focus too, or train.level_focus_width=1")


def consistent_step_limit(sigma_end: float) -> float:
    """Largest step_size of the "consistent" convention: 2 sigma_L^2, where one step would
    remove more than all of a level's noise (eta = step_size / sigma_L^2 > 2)."""
    return 2 * sigma_end ** 2


@dataclass(frozen=True)
class SampleConfig:
    """Sampler settings: annealed Langevin dynamics (Algorithm 1 of the paper) by default.

    `convention` "reference_code" is x + a*s + sqrt(2a) z with a = step_size*(sigma_i/sigma_L)^2,
    as the authors' code (and their published samples); "paper" is x + a/2*s + sqrt(a) z;
    "consistent" is x + a*s + sigma_i*sqrt(1 - (1 - eta)^2) z, eta = step_size / sigma_L^2,
    which keeps the chain at the level's noise (`keras_ncsn.noise.step_sizes`).
    `method` "ancestral" is the VE ancestral sampler (`keras_ncsn.sampling.AncestralSampler`):
    one step per level from its prior N(0, sigma_1^2 I), ending with the denoising step, so
    steps_per_level, step_size, convention, init and denoise are Langevin settings it ignores.
    """

    method: str = "annealed_langevin"
    num_images: int = 64
    steps_per_level: int = 100
    step_size: float = 2e-5
    convention: str = "reference_code"
    init: str = "uniform"
    denoise: bool = False
    clip: bool = True
    jit_compile: bool = True
    grid_every: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        _check_choices(self, "sample", {"method": METHODS, "convention": CONVENTIONS,
                                        "init": INITS})
        _check_positive(self, "sample", ("num_images", "steps_per_level", "step_size"))
        _check(self.grid_every >= 0, "sample.grid_every must be >= 0 (0 means only at the end)")


@dataclass(frozen=True)
class Config:
    """Everything a run needs; `name` is the preset it started from."""

    name: str = "custom"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)

    def __post_init__(self) -> None:
        # Checked here, before training, not when the final grid builds the sampler.
        limit = consistent_step_limit(self.noise.sigma_end)
        _check(self.sample.convention != "consistent" or self.sample.step_size <= limit,
               f"sample.convention=consistent needs sample.step_size <= 2 noise.sigma_end^2 "
               f"= {limit:g}, got {self.sample.step_size:g}")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.data.image_size, self.data.image_size, self.data.channels)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "Config":
        """Builds a config from `to_dict` output; unknown keys are an error."""
        if not isinstance(raw, Mapping):
            raise ConfigError("a config must be a JSON object")
        sections = {f.name: f for f in fields(cls)}
        unknown = set(raw) - set(sections)
        if unknown:
            raise ConfigError(f"unknown config section(s): {', '.join(sorted(unknown))}")
        kwargs: dict[str, Any] = {}
        for name, value in raw.items():
            section_type = _SECTION_TYPES.get(name)
            if section_type is None:
                kwargs[name] = str(value)
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"config section {name!r} must be an object")
            valid = {f.name for f in fields(section_type)}
            bad = set(value) - valid
            if bad:
                raise ConfigError(f"unknown key(s) in config section {name!r}: "
                                  f"{', '.join(sorted(bad))}")
            kwargs[name] = section_type(**{k: _coerce(f"{name}.{k}", v, _field_type(section_type, k))
                                           for k, v in value.items()})
        return cls(**kwargs)


_SECTION_TYPES: dict[str, type] = {
    "data": DataConfig, "model": ModelConfig, "noise": NoiseConfig,
    "train": TrainConfig, "sample": SampleConfig,
}


def _field_type(section_type: type, key: str) -> type:
    return {"int": int, "float": float, "bool": bool, "str": str}[
        {f.name: f.type for f in fields(section_type)}[key]]


def _coerce(key: str, value: Any, kind: type) -> Any:
    """Converts a JSON value or a command-line string to the field's type."""
    if isinstance(value, str):
        text = value.strip()
        if kind is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        if kind in (int, float):
            try:
                number = float(text) if kind is float else int(float(text))
            except ValueError:
                raise ConfigError(f"{key} must be a number, got {value!r}") from None
            if kind is int and float(text) != number:
                raise ConfigError(f"{key} must be a whole number, got {value!r}")
            return number
        return text
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is str and value is not None and not isinstance(value, (dict, list)):
        return str(value)
    raise ConfigError(f"{key} must be of type {kind.__name__}, got {value!r}")


def override(config: Config, assignments: Iterable[str]) -> Config:
    """Applies `section.key=value` strings (the `--set` flag) to a config.

    A section takes all its changes at once, so values checked together (noise.sigma_begin
    >= noise.sigma_end) may come in any order; a repeated key keeps its last value. The data
    source follows what is set: data.data_dir on an "embedded" config reads that path
    (data.dataset becomes "files"), and data.dataset=embedded drops a data_dir it does not
    read; setting both that way is an error (`DataConfig`), never a silently ignored path.
    So is setting a Langevin-only sample key (`LANGEVIN_ONLY`) for another sample.method.
    """
    changes: dict[str, dict[str, Any]] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        key = key.strip()
        section, dot, name = key.partition(".")
        if not sep or not dot:
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        section_type = _SECTION_TYPES.get(section)
        if section_type is None:
            raise ConfigError(f"unknown config section {section!r} in {item!r}; "
                              f"sections are {', '.join(_SECTION_TYPES)}")
        valid = [f.name for f in fields(section_type)]
        if name not in valid:
            raise ConfigError(f"unknown config key {key!r}; keys of {section!r} are "
                              f"{', '.join(valid)}")
        changes.setdefault(section, {})[name] = _coerce(key, value,
                                                        _field_type(section_type, name))
    data = changes.get("data", {})
    if data.get("data_dir") and "dataset" not in data and config.data.dataset == "embedded":
        data["dataset"] = "files"
    if data.get("dataset") == "embedded" and "data_dir" not in data:
        data["data_dir"] = ""
    for section, values in changes.items():
        config = replace(config, **{section: replace(getattr(config, section), **values)})
    ignored = [key for key in changes.get("sample", {}) if key in LANGEVIN_ONLY]
    if ignored and config.sample.method != "annealed_langevin":
        raise ConfigError(f"sample.{', sample.'.join(ignored)} set the Langevin sampler, but "
                          f"sample.method={config.sample.method} takes one step per level "
                          "without them")
    return config


def override_sample(config: Config, assignments: Iterable[str],
                    unused: Mapping[str, str] | None = None) -> SampleConfig:
    """`config.sample` with `--set` assignments, for scripts that only sample: a key of
    another section is an error, and so is a key of `unused` (key -> what to use instead),
    which would have no effect there."""
    assignments = list(assignments)
    for item in assignments:
        key = item.partition("=")[0].strip()
        if not key.startswith("sample."):
            raise ConfigError(f"only sample settings can change here: --set takes only "
                              f"sample.KEY=VALUE, got {item!r}")
        if unused and key in unused:
            raise ConfigError(f"{key} has no effect here: {unused[key]}")
    return override(config, assignments).sample


def _paper(name: str, dataset: str, image_size: int, channels: int, ngf: int,
           **data: Any) -> Config:
    return Config(
        name=name,
        data=DataConfig(dataset=dataset, image_size=image_size, channels=channels, **data),
        model=ModelConfig(ngf=ngf),
        noise=NoiseConfig(sigma_begin=1.0, sigma_end=0.01, num_levels=10),
        train=TrainConfig(batch_size=128, steps=200_000, learning_rate=1e-3),
        sample=SampleConfig(steps_per_level=100, step_size=2e-5, convention="reference_code"),
    )


# The CPU default, tuned for sample quality per minute within 15 minutes on 2 CPU cores:
# every experiment behind these values is in docs/quick_preset_tuning.md. Sampling runs
# without XLA, which on CPU compiled slower than it ran.
QUICK = Config(
    name="quick",
    data=DataConfig(dataset="embedded", image_size=28, channels=1),
    model=ModelConfig(ngf=16, scale_by_sigma=True),
    noise=NoiseConfig(sigma_begin=5.0, sigma_end=0.02, num_levels=10),
    train=TrainConfig(batch_size=64, steps=1400, learning_rate=3e-3, lr_schedule="cosine",
                      warmup_fraction=0.05, ema_momentum=0.99, checkpoint_every=300, log_every=50,
                      time_budget=14.0, level_focus=0.5, level_focus_width=1.5),
    sample=SampleConfig(num_images=64, steps_per_level=30, step_size=1.2e-4,
                        convention="reference_code", denoise=True, jit_compile=False),
)

PRESETS: dict[str, Config] = {
    "quick": QUICK,
    "mnist": _paper("mnist", "mnist", 28, 1, 64),
    "fashion_mnist": _paper("fashion_mnist", "fashion_mnist", 28, 1, 64),
    "cifar10": _paper("cifar10", "cifar10", 32, 3, 128, random_flip=True),
    "celeba": _paper("celeba", "celeb_a", 32, 3, 128, random_flip=True, center_crop=140),
}


def get_config(name_or_path: str = "quick", assignments: Iterable[str] = ()) -> Config:
    """Returns a preset by name, or a config JSON file / run folder by path, with overrides."""
    if name_or_path in PRESETS:
        config = PRESETS[name_or_path]
    elif os.path.isdir(name_or_path) or name_or_path.endswith(".json"):
        config = load_config(name_or_path)
    else:
        raise ConfigError(f"unknown config {name_or_path!r}: use a preset "
                          f"({', '.join(PRESETS)}) or a path to a config.json or run folder")
    return override(config, assignments)


CONFIG_FILE = "config.json"


def load_config(path: str) -> Config:
    """Loads `config.json` from a file path or a run folder."""
    file = os.path.join(path, CONFIG_FILE) if os.path.isdir(path) else path
    try:
        with open(file, encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"no config file at {file}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"config file {file} is not valid JSON: {e}") from None
    return Config.from_dict(raw)


def save_config(config: Config, folder: str) -> str:
    """Writes `folder/config.json` atomically and returns its path."""
    path = os.path.join(folder, CONFIG_FILE)
    atomic_write_text(path, config.to_json() + "\n")
    return path
