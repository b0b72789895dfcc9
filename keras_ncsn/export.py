"""Export a trained run for serving: a TensorFlow SavedModel, two ONNX models and a model card.

An export folder (file names and checks in `keras_ncsn.onnx_runtime`) holds
    saved_model/   SavedModel written by `keras.export.ExportArchive`; endpoints
                   sample(num_images, seed) -> [N, H, W, C] in [0, 1]  (also serving_default)
                   sample_ancestral(num_images, seed) -> [N, H, W, C]  (the VE ancestral
                   sampler: L score calls, the chain of keras_ncsn.likelihood's bound)
                   inpaint(images, mask, seed) -> [N, H, W, C]  (mask [N or 1, H, W, C or 1])
                   score(x, level_index) -> [N, H, W, C]
                   sigmas() -> [L]
                   It loads with `tf.saved_model.load(path)` alone (no keras_ncsn needed).
                   Endpoints check their inputs in the graph (`_checked`): bad values fail
                   with InvalidArgumentError "assertion failed: [what is wrong]".
    score.onnx     the score network: x float32 [N, H, W, C], level_index int32 [N] -> score.
    sampler.onnx   the whole annealed Langevin loop as one ONNX graph (a Loop):
                   x [N, H, W, C], noise [k*T, N, H, W, C], first_level int32 -> images.
    config.json    the run's config: sigmas (noise.*) and sampler settings (sample.*).
    MODEL_CARD.md  data, training, held-out loss, sampler settings, sample grid.
    samples.png    the run's last sample grid (or one sampled at export).

sample/inpaint are the run's sampler (`NCSN.sampler` with its sample.* settings: the same
cached tf.while_loop, stateless seeding and XLA switch), traced without autograph, with EMA
weights when the run kept them. A seed names the sampler's philox streams, so the SavedModel
gives the images `NCSN.sample(seed=...)` gives, on every call and after every reload.

sampler.onnx takes its noise as inputs because tf2onnx 1.17 has no converter for TensorFlow's
stateless random ops (StatelessRandomNormalV2, StatelessRandomUniformV2,
StatelessRandomGetKeyCounter): it is `LangevinSampler.given_noise_loop`, frozen first
(convert_variables_to_constants_v2) because ONNX Runtime refuses model variables captured in
a Loop body. Given the same noise it matches TensorFlow; see `keras_ncsn.onnx_runtime` for
what a seed means there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import logging
import os
import shlex
import shutil
from typing import Iterator, Sequence

import keras
import tensorflow as tf

from keras_ncsn.config import PRESETS, Config, SampleConfig, save_config
from keras_ncsn.errors import ExportError
from keras_ncsn.images import save_grid
from keras_ncsn.io import atomic_path, atomic_write_text, check_output_folder
from keras_ncsn.model import NCSN
from keras_ncsn.onnx_runtime import (CARD_FILE, EXPORT_MARKERS, SAMPLER_FILE, SAMPLES_FILE,
                                     SAVED_MODEL_DIR, SCORE_FILE, check_export)
from keras_ncsn.sampling import LangevinSampler, describe_sampler, sample_options
from keras_ncsn.training import RunPaths, flatten_config, format_heldout, load_run

ONNX_OPSET = 17


def _score_signature(model: NCSN) -> list[tf.TensorSpec]:
    return [tf.TensorSpec([None, *model.image_shape], tf.float32, name="x"),
            tf.TensorSpec([None], tf.int32, name="level_index")]


def _checked(tensors: Sequence[tf.Tensor],
             *requirements: tuple[tf.Tensor, str]) -> list[tf.Tensor]:
    """`tensors`, readable only after every (condition, message) in `requirements` holds.

    The Assert ops stay in the SavedModel, so a bad input fails with its message instead
    of deep inside the network with TensorFlow's node names (or, for an out-of-range
    gather on a GPU, silently with zeros).
    """
    checks = [tf.debugging.Assert(tf.reduce_all(condition), [message])
              for condition, message in requirements]
    with tf.control_dependencies(checks):
        return [tf.identity(t) for t in tensors]


def _sample_endpoint(sampler: LangevinSampler, image_shape: tuple[int, int, int]):
    """sample(num_images, seed): the whole of `sampler` from its initial draw."""
    height, width, channels = image_shape

    def sample(num_images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        (num_images,) = _checked([num_images], (num_images >= 1, "num_images must be >= 1"))
        x = sampler.initial(tf.stack([num_images, height, width, channels]), seed)
        return sampler.compiled_loop()(x, seed, tf.constant(0),
                                       tf.constant(sampler.num_levels))
    return sample


def _inpaint_endpoint(sampler: LangevinSampler, image_shape: tuple[int, int, int]):
    """inpaint(images, mask, seed), checking the inputs with messages a user can act on."""
    height, width, channels = image_shape
    mask_channels = "1" if channels == 1 else f"{channels} or 1"

    def inpaint(images: tf.Tensor, mask: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        batch, mask_shape = tf.shape(images)[0], tf.shape(mask)
        images, mask = _checked(
            [images, mask], (batch >= 1, "images must hold at least one image"),
            (tf.math.is_finite(images) & (images >= 0) & (images <= 1),
             "images must be finite and in [0, 1]"),
            (((mask_shape[0] == 1) | (mask_shape[0] == batch))
             & ((mask_shape[3] == 1) | (mask_shape[3] == channels)),
             f"mask must be [N or 1, {height}, {width}, {mask_channels}] for images "
             f"[N, {height}, {width}, {channels}]"),
            ((mask == 0) | (mask == 1),
             "mask must be binary: 1 = observed pixel, 0 = pixel to inpaint"))
        mask = tf.broadcast_to(mask, tf.shape(images))
        x = sampler.inpainting_initial(images, mask, seed)
        return sampler.compiled_loop(inpainting=True)(
            x, seed, tf.constant(0), tf.constant(sampler.num_levels), images, mask)
    return inpaint


def save_saved_model(model: NCSN, sample: SampleConfig, path: str) -> None:
    """Writes the SavedModel with endpoints sample (= serving_default), sample_ancestral,
    inpaint, score, sigmas; `sample` is the sampler's config.

    `keras.export.ExportArchive` expresses all of it: endpoints are arbitrary functions over
    the model's variables (wrapped in tf.function without autograph), which it collects from
    the endpoints. Two things keep the folder to one copy of the weights and of the network:
    - the model is not `track`ed (that is for lookup tables): tracking saves each weight a
      second time, once as the Keras variable and once as the tf.Variable the endpoints read;
    - every endpoint calls one traced score network. Inlined, the network's few thousand
      ops would be stored in each while-loop body and denoising branch: six times, 9 MB.
    """
    network = tf.function(model.score, input_signature=_score_signature(model),
                          autograph=False)
    sigmas = keras.ops.convert_to_numpy(model.sigmas)
    sampler = LangevinSampler.from_config(network, sigmas, sample)
    ancestral = LangevinSampler.from_config(network, sigmas, sample, method="ancestral")
    height, width, channels = model.image_shape

    def score(x: tf.Tensor, level_index: tf.Tensor) -> tf.Tensor:
        x, level_index = _checked(
            [x, level_index], (tf.size(level_index) == tf.shape(x)[0],
                               "level_index must hold one level per image of x"),
            ((level_index >= 0) & (level_index < model.num_levels),
             f"level_index must be in [0, {model.num_levels})"))
        return network(x, level_index)

    archive = keras.export.ExportArchive()
    count = tf.TensorSpec([], tf.int32, name="num_images")
    seed = tf.TensorSpec([], tf.int64, name="seed")
    archive.add_endpoint("sample", _sample_endpoint(sampler, model.image_shape), [count, seed])
    archive.add_endpoint("sample_ancestral", _sample_endpoint(ancestral, model.image_shape),
                         [count, seed])
    archive.add_endpoint("inpaint", _inpaint_endpoint(sampler, model.image_shape), [
        tf.TensorSpec([None, height, width, channels], tf.float32, name="images"),
        tf.TensorSpec([None, height, width, None], tf.float32, name="mask"), seed])
    archive.add_endpoint("score", score, _score_signature(model))
    archive.add_endpoint("sigmas", lambda: tf.identity(model.sigmas), [])
    archive.write_out(path, verbose=False)


@contextlib.contextmanager
def _quiet_tf2onnx() -> Iterator[None]:
    """Errors only from tf2onnx, whose INFO/WARNING lines run to thousands for a Loop."""
    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _tf2onnx_catch_errors(catch: bool) -> Iterator[None]:
    """Whether tf2onnx undoes an optimizer pass that fails, for one conversion: undoing
    costs a deep copy of the whole graph before each pass, half the conversion time of our
    models. (tf2onnx 1.17 catches exactly when TF2ONNX_CATCH_ERRORS is unset: it compares
    the variable's name, not its value, with "TRUE".)"""
    name = "TF2ONNX_CATCH_ERRORS"
    saved = os.environ.pop(name, None)
    if not catch:
        os.environ[name] = "FALSE"
    try:
        yield
    finally:
        os.environ.pop(name, None)
        if saved is not None:
            os.environ[name] = saved


def _save_onnx(function: tf.types.experimental.ConcreteFunction, path: str,
               output: str) -> None:
    """Converts a concrete function to ONNX with its variables frozen to constants.

    Freezing first is what lets ONNX Runtime run a Loop whose body reads model weights
    (tf2onnx leaves captured variables as graph inputs otherwise). Inputs keep their
    signature names; the single output is named `output`.
    """
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    frozen = convert_variables_to_constants_v2(function)
    inputs = [t.name for t in frozen.inputs]
    (result,) = [t.name for t in frozen.outputs]
    renames = {name: name.split(":")[0] for name in inputs} | {result: output}
    graph_def = frozen.graph.as_graph_def()

    def convert(catch: bool):
        with _quiet_tf2onnx(), _tf2onnx_catch_errors(catch):
            return tf2onnx.convert.from_graph_def(
                graph_def, input_names=inputs, output_names=[result], opset=ONNX_OPSET,
                tensors_to_rename=renames)[0]

    try:
        proto = convert(catch=False)
    except Exception:  # a pass failed: again with tf2onnx skipping the passes that fail
        proto = convert(catch=True)
    share_initializers(proto.graph)
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())


def _subgraphs(node) -> Iterator:
    """The graphs in a node's attributes (a Loop's body, an If's branches)."""
    import onnx

    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.GRAPH:
            yield attribute.g
        yield from attribute.graphs


def _rename_inputs(graph, renames: dict[str, str]) -> None:
    """Points the node inputs of `graph` and of its subgraphs at new names."""
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        for subgraph in _subgraphs(node):
            _rename_inputs(subgraph, renames)


def _content(tensor) -> bytes:
    """A tensor's dtype, shape and values, serialised without its name."""
    copy = type(tensor)()
    copy.CopyFrom(tensor)
    copy.ClearField("name")
    return copy.SerializeToString(deterministic=True)


def share_initializers(graph, outer: dict[bytes, str] | None = None) -> int:
    """Drops each subgraph initializer that equals one of an enclosing graph and reads the
    enclosing one instead (ONNX subgraphs see outer-scope names); returns how many.

    tf2onnx lifts the Loop body's weights into the main graph but gives the If branch of
    the final denoising step its own copy of every weight: twice the weights in
    sampler.onnx without this.
    """
    outer = dict(outer or {})
    for tensor in graph.initializer:
        outer.setdefault(_content(tensor), tensor.name)
    shared = 0
    for node in graph.node:
        for subgraph in _subgraphs(node):
            outputs = {value.name for value in subgraph.output}
            contents = {tensor.name: _content(tensor) for tensor in subgraph.initializer}
            renames = {name: outer[content] for name, content in contents.items()
                       if name not in outputs and content in outer}
            kept = [tensor for tensor in subgraph.initializer if tensor.name not in renames]
            del subgraph.initializer[:]
            subgraph.initializer.extend(kept)
            _rename_inputs(subgraph, renames)
            shared += len(renames) + share_initializers(subgraph, outer)
    return shared


def save_score_onnx(model: NCSN, path: str) -> None:
    """score.onnx: (x [N, H, W, C] float32, level_index [N] int32) -> score, any N."""
    function = tf.function(model.score, input_signature=_score_signature(model),
                           autograph=False)
    _save_onnx(function.get_concrete_function(), path, "score")


def save_sampler_onnx(sampler: LangevinSampler, path: str) -> None:
    """sampler.onnx: `LangevinSampler.given_noise_loop` (x, noise, first_level) -> images."""
    _save_onnx(sampler.given_noise_loop().get_concrete_function(), path, "images")


def training_command(config: Config) -> str:
    """A fit.py command line that trains `config` (from its preset plus --set changes):
    exactly its train.steps, so with any time budget turned off."""
    if config.name not in PRESETS:
        return "python scripts/fit.py --config RUN_DIR/config.json"
    preset = flatten_config(PRESETS[config.name])
    wanted = {**flatten_config(config), "train.time_budget": 0.0}
    changes = [f"{key}={value}" for key, value in wanted.items() if preset[key] != value]
    words = ["python", "scripts/fit.py"] + (["--config", config.name]
                                            if config.name != "quick" else [])
    for change in changes:
        words += ["--set", change]
    return shlex.join(words)


def _samples_png(model: NCSN, config: Config, run_dir: str, path: str) -> str:
    """Copies the run's newest sample grid to `path`, or samples one; returns its origin."""
    grids = sorted(glob.glob(os.path.join(RunPaths(run_dir).samples, "grid-*.png")))
    if grids:
        shutil.copyfile(grids[-1], path)
        return f"the run's last sample grid, {os.path.basename(grids[-1])}"
    sample = config.sample
    save_grid(model.sample(sample.num_images, seed=sample.seed, **sample_options(sample)),
              path)
    return f"sampled at export (seed {sample.seed})"


def _evaluation_line(evaluation: dict) -> str:
    """One further evaluation (another seed, say) of the exported sampler in a sentence."""
    got, floor = evaluation["classes"], evaluation["real_floor"]
    fid = evaluation["fid"]["value"]
    return (f"- `{evaluation['command']}` ({evaluation['num_samples']:,} samples, seed "
            f"{evaluation['seed']}): confident fraction {got['confident_fraction']:.3f} (real "
            f"{floor['confident_fraction']:.3f}), class entropy {got['class_entropy']:.3f} "
            f"(real {floor['class_entropy']:.3f}), FID {fid:.3f} (floor {floor['fid']:.3f}, "
            f"{fid / floor['fid']:.2f}x).")


def quality_lines(evaluation: dict | None, further: Sequence[dict] = ()) -> list[str]:
    """The card's sample-quality section from `scripts/evaluate.py`'s metrics.json, and a
    line for each `further` evaluation of the same sampler."""
    if not evaluation:
        return ["- not measured: run `python scripts/evaluate.py RUN` before exporting, and "
                "the card reports its figures."]
    got, floor = evaluation["classes"], evaluation["real_floor"]
    fid = evaluation["fid"]["value"]
    more = ["", "The same sampler, evaluated again:", *map(_evaluation_line, further)]
    return [
        f"Measured by `{evaluation['command']}` ({evaluation['num_samples']:,} samples, seed "
        f"{evaluation['seed']}, {evaluation['features']}):",
        "",
        "| metric | samples | real images |",
        "| --- | ---: | ---: |",
        f"| confident fraction (max class probability > 0.9) | {got['confident_fraction']:.3f} "
        f"| {floor['confident_fraction']:.3f} |",
        f"| class entropy, nats (uniform {got['uniform_entropy']:.3f}) | "
        f"{got['class_entropy']:.3f} | {floor['class_entropy']:.3f} |",
        f"| FID vs {evaluation['fid']['num_real']:,} test images | {fid:.3f} | "
        f"{floor['fid']:.3f} (floor) |",
        *(more if further else []),
    ]


def _card_training(config: Config, step: int, command: str | None,
                   notes: Sequence[str]) -> list[str]:
    """The model card's Data and Training sections."""
    data, train, noise = config.data, config.train, config.noise
    height, width, channels = config.image_shape
    source = data.dataset + (f" ({data.data_dir})" if data.data_dir else "")
    if data.dataset == "embedded":
        source = "the MNIST subset shipped in keras_ncsn/assets/mnist_subset.npz"
    cap = f", at most {data.max_train_images} training images" if data.max_train_images else ""
    rebuilt = training_command(config)
    return [
        "## Data",
        f"- {source}; {height}x{width}x{channels} images in [0, 1]"
        f"{', dequantized' if data.dequantize else ''}{cap}.",
        "",
        "## Training",
        f"- Command: `{command or rebuilt}`",
        *([f"- With the presets of the exporting code, the same config is trained by "
           f"`{rebuilt}`."] if command and command != rebuilt else []),
        f"- Steps: {step} (batch {train.batch_size}, Adam lr {train.learning_rate} "
        f"{train.lr_schedule}"
        + (f" with {train.warmup_fraction:g} of the steps as warm-up"
           if train.warmup_fraction else "")
        + f", objective {train.objective}"
        + (f", EMA {train.ema_momentum}: exported weights are the EMA" if train.ema_momentum
           else "") + ").",
        f"- Model: ngf={config.model.ngf}, scale_by_sigma={config.model.scale_by_sigma}; "
        f"{noise.num_levels} geometric noise levels sigma {noise.sigma_begin:g} .. "
        f"{noise.sigma_end:g}.",
        *[f"- {note}" for note in notes],
    ]


# The model card's description of the export folder's files and how their seeds work.
CARD_FILES = [
    "## Files and seeds",
    f"- `{SAVED_MODEL_DIR}/`: TensorFlow SavedModel, `tf.saved_model.load(path)` with no "
    "keras_ncsn: `sample(num_images, seed)` (serving_default), `inpaint(images, mask, "
    "seed)`, `score(x, level_index)`, `sigmas()`, and `sample_ancestral(num_images, "
    "seed)` (the VE ancestral sampler: one score call per level). A seed gives the same "
    "images on every call and reload, the same as keras_ncsn's `NCSN.sample(seed=...)` "
    "(TensorFlow stateless philox streams).",
    f"- `{SCORE_FILE}`: the score network for ONNX Runtime (opset {ONNX_OPSET}, dynamic "
    "batch): inputs x float32 [N, H, W, C] in [0, 1], level_index int32 [N]; output "
    "score. Deterministic.",
    f"- `{SAMPLER_FILE}`: the annealed Langevin loop as one ONNX graph (a Loop), noise "
    "as inputs: x [N, H, W, C], noise [k*T, N, H, W, C] standard normal, first_level "
    "int32; output images after k levels (denoised/clipped after the last). "
    "`python scripts/onnx_sample.py FOLDER --seed S` draws x and the noise from NumPy's "
    "`default_rng(S)`: other images than the SavedModel's for the same seed.",
    "- `config.json`: the run's config (sigmas from `noise`, sampler from `sample`).",
    "",
]


def model_card(name: str, config: Config, step: int, heldout: dict | None,
               command: str | None, samples_origin: str, notes: Sequence[str] = (),
               evaluation: dict | None = None, further: Sequence[dict] = ()) -> str:
    """MODEL_CARD.md: what was trained on what, how, how well, and how to sample from it.

    `command` is the command the run was trained with; when it differs from
    `training_command(config)` (presets change), the card gives both. `evaluation` is the
    run's metrics.json from `scripts/evaluate.py` at the exported step, if there is one;
    `further` are more evaluations of the same sampler (`evaluate.py --seed 1 --out DIR`).
    """
    lines = [
        f"# {name}: NCSN score model (CondRefineNetDilated)",
        "",
        "Noise Conditional Score Network (Song & Ermon 2019) trained with keras-ncsn and "
        "exported by `scripts/export.py`.",
        "",
        *_card_training(config, step, command, notes),
        "",
        "## Held-out loss",
    ]
    if heldout:
        lines += ["```", format_heldout(heldout), "```"]
    else:
        lines.append("- not measured (the run folder has no heldout_loss.json).")
    lines += ["", "## Sample quality", *quality_lines(evaluation, further)]
    lines += [
        "",
        "## Sampler",
        f"- `sample`: {describe_sampler(config.sample)}.",
        "",
        f"![samples]({SAMPLES_FILE})",
        "",
        f"{SAMPLES_FILE}: {samples_origin}.",
        "",
        *CARD_FILES,
    ]
    return "\n".join(lines)


def export_run(run_dir: str, out: str, *, command: str | None = None,
               notes: Sequence[str] = (), evaluations: Sequence[str] = (),
               overwrite: bool = False) -> str:
    """Exports the run in `run_dir` (EMA weights if kept) to the folder `out`, atomically.

    `command` is the training command for the model card (default: `training_command`);
    `notes` are extra card lines (e.g. wall time and hardware); `evaluations` are folders
    of more `scripts/evaluate.py` runs of the exported step and sampler for the card
    (ExportError for any other). `out` must be new or empty, or with `overwrite` an earlier
    export (never another folder: it is replaced whole). Returns `out`.
    """
    check_output_folder(out, EXPORT_MARKERS, "export folder", replace=overwrite)
    config, model, step = load_run(run_dir)
    # RUN/eval first when it measured this sampler; the card tabulates the first of them
    measured = [evaluation for evaluation in [run_evaluation(run_dir, step, config.sample)]
                if evaluation]
    measured += [read_evaluation(folder, step, config.sample) for folder in evaluations]
    first, further = (measured[0], measured[1:]) if measured else (None, [])
    sampler = model.sampler(**sample_options(config.sample))
    heldout_path = RunPaths(run_dir).heldout
    heldout = None
    if os.path.isfile(heldout_path):
        with open(heldout_path, encoding="utf-8") as f:
            heldout = json.load(f)
    name = os.path.basename(os.path.normpath(out))
    with atomic_path(out, is_dir=True) as tmp:
        save_config(config, tmp)
        save_saved_model(model, config.sample, os.path.join(tmp, SAVED_MODEL_DIR))
        save_score_onnx(model, os.path.join(tmp, SCORE_FILE))
        save_sampler_onnx(sampler, os.path.join(tmp, SAMPLER_FILE))
        origin = _samples_png(model, config, run_dir, os.path.join(tmp, SAMPLES_FILE))
        atomic_write_text(os.path.join(tmp, CARD_FILE), model_card(
            name, config, step, heldout, command, origin, notes, first, further))
    return out


# Sample settings that do not change the chain a sample follows.
NOT_CHAIN_SETTINGS = ("num_images", "grid_every", "seed", "jit_compile")


def read_evaluation(folder: str, step: int, sample: SampleConfig) -> dict:
    """FOLDER/metrics.json of `scripts/evaluate.py RUN --out FOLDER`, which must have
    evaluated `step` with the sampler `sample` (ExportError otherwise): figures of another
    step or sampler (`--set sample.KEY=...`) would describe samples the export does not draw.
    """
    path = os.path.join(folder, "metrics.json")
    try:
        with open(path, encoding="utf-8") as f:
            evaluation = json.load(f)
    except (OSError, ValueError) as e:
        raise ExportError(f"cannot read the evaluation {path} (written by scripts/evaluate.py "
                          f"RUN --out {folder}): {e}") from None
    if "classes" not in evaluation:
        raise ExportError(f"{path} has no classifier figures: evaluate with a classifier")
    if evaluation.get("step") != step:
        raise ExportError(f"{path} evaluated step {evaluation.get('step')}, not the exported "
                          f"step {step}")
    used = evaluation.get("sampler", {})
    if any(used.get(key) != value for key, value in dataclasses.asdict(sample).items()
           if key not in NOT_CHAIN_SETTINGS):
        raise ExportError(f"{path} evaluated another sampler than the run's sample.* "
                          "settings, which the export draws with")
    return evaluation


def run_evaluation(run_dir: str, step: int, sample: SampleConfig) -> dict | None:
    """RUN/eval/metrics.json (`scripts/evaluate.py RUN`) if it evaluated the run at `step`
    with the sampler `sample` exports (see `read_evaluation`), else None."""
    folder = os.path.join(run_dir, "eval")
    try:
        return read_evaluation(folder, step, sample)
    except ExportError:
        return None


def load_export(folder: str):
    """The SavedModel of an export folder (`tf.saved_model.load`), after checking the folder."""
    check_export(folder)
    path = os.path.join(folder, SAVED_MODEL_DIR)
    try:
        return tf.saved_model.load(path)
    except (OSError, ValueError, tf.errors.OpError) as e:
        raise ExportError(f"cannot load the SavedModel {path}: "
                          f"{str(e).strip().splitlines()[0]}") from None
