"""Encoder-decoder models (BART, T5 families) for ``text2text-generation`` and ``summarization``.

Both backends build a :class:`~pytest_pipeperf.backends.base.GenerativeRunnable`:

* ``eager``: ``AutoModelForSeq2SeqLM`` in PyTorch (fp32, bf16, and the int8 / int4 recipes of
  ``backends/_quant.py``, which quantise its ``nn.Linear`` layers).
* ``onnxruntime``: optimum's ``text2text-generation-with-past`` export, which writes
  ``encoder_model.onnx``, ``decoder_model.onnx``, ``decoder_with_past_model.onnx`` and
  ``decoder_model_merged.onnx`` (optimum-onnx 0.1.0); the runnable runs the encoder, then
  ``decoder_model.onnx`` for the first step and ``decoder_with_past_model.onnx`` for the cached
  steps. Not the merged decoder: its weights sit outside the ``If`` node that switches
  its branches (``use_cache_branch``), and ``quantize_dynamic`` quantises none of its MatMuls
  (0 of 28 on the tiny BART), so an "int8" merged decoder would run fp32. The export is cached
  in ``<cache>/onnx/<key>/`` like the other exports, and int8 / int4 quantise the three graphs
  with the recipes of ``backends/_ort_quant.py``.

What each runnable does (the same on both backends):

* ``__call__(batch)``: the encoder pass plus one decoder step from ``decoder_start_token_id``;
  returns ``{"logits": float32 [batch, vocab]}`` (the decoder-start position's logits).
* ``decode_logits(batch, tokens)``: after that first step, feeds ``tokens`` one at a time through
  the decoder's key/value cache (teacher forcing) and returns every step's logits.
* ``generate(batch, new_tokens)``: greedy decoding of exactly ``new_tokens`` tokens (the end
  token does not stop it), the encoder output and the decoder cache reused at every step. The
  clock starts before tokenisation, so the first token's time includes tokenisation, the encoder
  pass and the first decoder step, as a call of ``__call__`` would.

Heavy imports happen inside the functions. This module imports neither ``eager.py`` nor
``onnxruntime.py`` (they dispatch here): the ONNX export's cache key function is passed in.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_pipeperf.backends._cache import (
    EXPORT_MANIFEST,
    build_entry,
    dist_version,
    entry_valid,
    file_sha256,
)
from pytest_pipeperf.backends._torch import EagerRunnable
from pytest_pipeperf.backends.base import (
    BackendError,
    BackendUnavailableError,
    Batch,
    BuildContext,
    BuildInfo,
    GenerationRun,
    ModelSpec,
    Task,
    TextBatch,
)
from pytest_pipeperf.precision import Precision

if TYPE_CHECKING:
    import numpy as np

    from pytest_pipeperf.devices import Device

EXPORT_TASK = "text2text-generation-with-past"
ENCODER_GRAPH = "encoder_model.onnx"
FIRST_DECODER_GRAPH = "decoder_model.onnx"
CACHED_DECODER_GRAPH = "decoder_with_past_model.onnx"
GRAPHS = (ENCODER_GRAPH, FIRST_DECODER_GRAPH, CACHED_DECODER_GRAPH)
# The artefact of a seq2seq cache entry: graph file name -> SHA-256 (so every graph is checked).
GRAPH_LIST = "pipeperf-graphs.json"
SEQ2SEQ_QUANT_FORMAT = 1


# -- shared checks ------------------------------------------------------------------------------

def _text_batch(batch: Batch, where: str) -> TextBatch:
    if not isinstance(batch, TextBatch):
        raise BackendError(f"{where}: an encoder-decoder text model takes texts, not "
                           f"{type(batch).__name__}; pass texts, e.g. pipeperf.inputs.texts(n=8)")
    if not batch.texts:
        raise BackendError(f"{where}: cannot run an empty batch")
    return batch


def _check_tokens(tokens: np.ndarray, rows: int, vocab: int, limit: int | None) -> np.ndarray:
    import numpy as np

    array = np.asarray(tokens)
    if array.ndim != 2 or array.shape[0] != rows or array.shape[1] < 1 \
            or not np.issubdtype(array.dtype, np.integer):
        raise BackendError(f"decode_logits(): tokens must be an integer array [batch={rows}, "
                           f"steps>=1], got {array.dtype} {list(array.shape)}")
    if array.min() < 0 or array.max() >= vocab:
        raise BackendError(f"decode_logits(): token ids must lie in [0, {vocab}) (the model's "
                           f"vocabulary), got {int(array.min())}..{int(array.max())}")
    _check_length(array.shape[1], limit, "decode_logits()", "steps")
    return array.astype(np.int64)


def _check_length(steps: int, limit: int | None, where: str, name: str) -> None:
    """The decoder sees ``steps + 1`` positions (its start token first)."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise BackendError(f"{where}: {name} must be an integer >= 1, got {steps!r}")
    if limit is not None and steps + 1 > limit:
        raise BackendError(f"{where}: {name}={steps} needs {steps + 1} decoder positions but the "
                           f"model has {limit} (config.json max_position_embeddings); use "
                           f"{name}<={limit - 1}")


def _config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot read {path / 'config.json'}: {exc}") from exc
    if not isinstance(data, dict):
        raise BackendError(f"{path / 'config.json'} is not a JSON object")
    return data


def _start_token(config: Mapping[str, Any], path: Path) -> int:
    start = config.get("decoder_start_token_id")
    if not isinstance(start, int):
        raise BackendError(f"{path / 'config.json'} has no decoder_start_token_id; an "
                           "encoder-decoder model needs it to start decoding")
    return start


def _position_limit(config: Mapping[str, Any]) -> int | None:
    # BART-style learned positions; T5's relative positions have no limit.
    value = config.get("max_position_embeddings")
    return value if isinstance(value, int) and value > 0 else None


def _not_encoder_decoder(model: ModelSpec, config: Mapping[str, Any]) -> BackendError:
    import types

    from pytest_pipeperf.backends._hf import is_decoder_only

    kind = config.get("model_type", "?")
    causal = is_decoder_only(types.SimpleNamespace(**config))
    advice = ("task='text-generation' (it is a causal language model)" if causal
              else "a task its architecture has, e.g. task='feature-extraction'")
    return BackendError(f"{model.task.value} needs an encoder-decoder model (BART, T5, ...); "
                        f"{model.path} is a {kind!r} model (config.json is_encoder_decoder is "
                        f"not true); use {advice}")


# -- eager --------------------------------------------------------------------------------------

class EagerSeq2SeqRunnable(EagerRunnable):
    """``AutoModelForSeq2SeqLM`` in inference mode plus its tokenizer, as a generative runnable.

    :param model: the loaded model (fp32, bf16 or quantised).
    :param tokenizer: its tokenizer.
    :param task: ``text2text-generation`` or ``summarization``.
    :param device: the torch device string.
    :param info: the build's costs.
    :param start: ``decoder_start_token_id``.
    :param limit: the decoder's position count (``None``: unlimited).
    """

    def __init__(self, model: Any, tokenizer: Any, task: Task, device: str, info: BuildInfo,
                 start: int, limit: int | None) -> None:
        super().__init__(model, tokenizer, task, device, info)
        self._start = start
        self._limit = limit
        self._vocab = int(model.config.vocab_size)

    def _encoder_inputs(self, batch: Batch, where: str) -> dict[str, Any]:
        from pytest_pipeperf.backends._hf import encode

        text = _text_batch(batch, where)
        return {k: self._torch.from_numpy(v).to(self._device)
                for k, v in encode(self._tokenizer, text, ("input_ids", "attention_mask")).items()}

    def _first(self, enc: Mapping[str, Any]) -> tuple[Any, Any, Any]:
        """Encoder pass + the decoder-start step: ``(encoder outputs, logits [b, vocab], cache)``."""
        model = self._model
        encoded = model.get_encoder()(**enc)
        rows = enc["input_ids"].shape[0]
        start = self._torch.full((rows, 1), self._start, dtype=self._torch.long,
                                 device=self._device)
        out = model(encoder_outputs=encoded, attention_mask=enc["attention_mask"],
                    decoder_input_ids=start, use_cache=True)
        return encoded, out.logits[:, -1, :], out.past_key_values

    def _step(self, encoded: Any, mask: Any, ids: Any, cache: Any) -> tuple[Any, Any]:
        out = self._model(encoder_outputs=encoded, attention_mask=mask,
                          decoder_input_ids=ids[:, None], past_key_values=cache, use_cache=True)
        return out.logits[:, -1, :], out.past_key_values

    def __call__(self, batch: Batch) -> Mapping[str, np.ndarray]:
        enc = self._encoder_inputs(batch, "__call__()")
        with self._torch.inference_mode():
            _, logits, _ = self._first(enc)
        return {"logits": logits.float().cpu().numpy()}

    def decode_logits(self, batch: TextBatch, tokens: np.ndarray) -> np.ndarray:
        """float32 ``[batch, steps, vocab]``: the logits after feeding each of ``tokens`` through
        the decoder cache, after the decoder-start step.

        :param batch: the encoder's texts.
        :param tokens: int64 ``[batch, steps]``.
        """
        import numpy as np

        enc = self._encoder_inputs(batch, "decode_logits()")
        fed = _check_tokens(tokens, int(enc["input_ids"].shape[0]), self._vocab, self._limit)
        torch = self._torch
        steps = []
        with torch.inference_mode():
            encoded, _, cache = self._first(enc)
            ids = torch.from_numpy(fed).to(self._device)
            for j in range(fed.shape[1]):
                logits, cache = self._step(encoded, enc["attention_mask"], ids[:, j], cache)
                steps.append(logits.float().cpu().numpy())
        return np.stack(steps, axis=1)

    def generate(self, batch: TextBatch, new_tokens: int) -> GenerationRun:
        """Greedy decoding of exactly ``new_tokens`` tokens, timed per token.

        :param batch: the encoder's texts.
        :param new_tokens: tokens per sequence (>= 1).
        """
        import numpy as np

        _check_length(new_tokens, self._limit, "generate()", "new_tokens")
        torch = self._torch
        stamps: list[int] = []
        chosen: list[np.ndarray] = []
        with torch.inference_mode():
            t0 = time.perf_counter_ns()
            enc = self._encoder_inputs(batch, "generate()")
            encoded, logits, cache = self._first(enc)
            ids = logits.argmax(dim=-1)
            chosen.append(ids.cpu().numpy())  # on the host: synchronises a GPU
            stamps.append(time.perf_counter_ns() - t0)
            for _ in range(new_tokens - 1):
                logits, cache = self._step(encoded, enc["attention_mask"], ids, cache)
                ids = logits.argmax(dim=-1)
                chosen.append(ids.cpu().numpy())
                stamps.append(time.perf_counter_ns() - t0)
        return GenerationRun(np.stack(chosen, axis=1).astype(np.int64), tuple(stamps))


def build_eager_seq2seq(model: ModelSpec, precision: Precision, device: Device,
                        context: BuildContext) -> EagerSeq2SeqRunnable:
    """The ``eager`` backend's build for ``text2text-generation`` / ``summarization``.

    :param model: the model directory and task.
    :param precision: fp32, bf16, fp16 (cuda) or an int8 / int4 recipe (cpu).
    :param device: where the model runs.
    :param context: threads and the chosen recipes.
    :raises BackendUnavailableError: torch / transformers / the recipe's package are missing.
    :raises BackendError: the model is not an encoder-decoder or fails to load.
    """
    from pytest_pipeperf.backends._hf import load_tokenizer
    from pytest_pipeperf.backends._quant import EAGER_RECIPES, module_bytes
    from pytest_pipeperf.backends._torch import import_transformers

    config = _config(model.path)
    if config.get("is_encoder_decoder") is not True:
        raise _not_encoder_decoder(model, config)
    start_id, limit = _start_token(config, model.path), _position_limit(config)
    transformers = import_transformers(context.threads)
    import torch

    if device.kind == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("pipeperf: device 'cuda' needs a CUDA build of torch "
                                      "and an NVIDIA GPU; torch sees none")
    auto = transformers.AutoModelForSeq2SeqLM
    recipe = None
    start = time.perf_counter()
    if precision in EAGER_RECIPES:
        from pytest_pipeperf.backends._quant import eager_recipe, load_quantised

        recipe = eager_recipe(precision, device, context)
        if recipe is None:
            raise BackendError(f"backend 'eager' has no {precision.value} recipe")
        net = load_quantised(auto, model, recipe)
    else:
        dtype = {Precision.FP32: torch.float32, Precision.BF16: torch.bfloat16,
                 Precision.FP16: torch.float16}[precision]
        try:
            net = auto.from_pretrained(str(model.path), dtype=dtype, local_files_only=True,
                                       trust_remote_code=model.trust_remote_code)
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot load {model.task.value} model from {model.path}: "
                               f"{exc}") from exc
        net = net.to(str(device)).eval()
    tokenizer = load_tokenizer(model)
    info = BuildInfo(load_s=time.perf_counter() - start)
    info.notes["model_bytes"] = module_bytes(net)
    if recipe is not None:
        info.notes["recipe"] = recipe
    return EagerSeq2SeqRunnable(net, tokenizer, model.task, str(device), info, start_id, limit)


# -- onnxruntime --------------------------------------------------------------------------------

def _graphs_valid(entry: Path, key: str) -> bool:
    """Is ``entry`` complete and untampered: its manifest names ``key`` and its graph list's
    hash, and every graph in the list has its recorded hash?"""
    if not entry_valid(entry, key, GRAPH_LIST, EXPORT_MANIFEST):
        return False
    try:
        graphs = json.loads((entry / GRAPH_LIST).read_text())
        return all(file_sha256(entry / name) == digest for name, digest in graphs.items()) \
            and all(name in graphs for name in GRAPHS)
    except (OSError, ValueError, AttributeError):
        return False


def _write_graph_list(directory: Path) -> None:
    graphs = {p.name: file_sha256(p) for p in sorted(directory.iterdir())
              if p.name.endswith((".onnx", ".onnx_data"))}
    (directory / GRAPH_LIST).write_text(json.dumps(graphs, indent=2, sort_keys=True))


def export_seq2seq_onnx(model: ModelSpec, cache_dir: Path,
                        task_export_key: Callable[[str, str], str]) -> tuple[Path, float, str]:
    """optimum's ``text2text-generation-with-past`` export of ``model``, cached in
    ``cache_dir/onnx/<key>`` (built and sealed by ``_cache.build_entry``; the sealed artefact is
    a list of every graph's SHA-256, so a stale or tampered graph re-exports).

    :param model: the model directory.
    :param cache_dir: the run's cache directory.
    :param task_export_key: ``onnxruntime.task_export_key`` (passed in: this module does not
        import the backend that dispatches to it).
    :returns: ``(entry directory, export seconds, "hit" | "miss")``.
    :raises BackendUnavailableError: optimum's exporter cannot be imported.
    :raises BackendError: the export failed, with optimum's reason.
    """
    from pytest_pipeperf.backends._hf import model_digest

    key = task_export_key(model_digest(model.path), EXPORT_TASK)
    entry = cache_dir / "onnx" / key
    if _graphs_valid(entry, key):
        return entry, 0.0, "hit"
    try:
        from optimum.exporters.onnx import main_export
    except (ImportError, OSError) as exc:
        raise BackendUnavailableError(
            f"pipeperf: backend 'onnxruntime' cannot import optimum's ONNX exporter ({exc}); "
            "install optimum-onnx") from exc

    def write(tmp: Path) -> None:
        main_export(str(model.path), output=tmp, task=EXPORT_TASK, library_name="transformers",
                    device="cpu", do_validation=False, local_files_only=True,
                    trust_remote_code=model.trust_remote_code)
        missing = [g for g in GRAPHS if not (tmp / g).is_file()]
        if missing:
            raise BackendError(f"optimum's {EXPORT_TASK} export of {model.path} did not write "
                               f"{', '.join(missing)} (got {sorted(p.name for p in tmp.iterdir())})")
        _write_graph_list(tmp)

    seconds = build_entry(entry, key, GRAPH_LIST, EXPORT_MANIFEST, write,
                          {"source": str(model.path), "task": EXPORT_TASK},
                          failure=f"optimum ONNX export of {model.path} ({EXPORT_TASK}) failed")
    return entry, seconds, "miss"


def quantize_seq2seq(export: Path, recipe: str) -> tuple[Path, float, str]:
    """The three graphs of a seq2seq export quantised by ``recipe`` (``backends/_ort_quant.py``),
    cached next to the export in ``<export>-<recipe>-<hash>/``.

    :param export: the export's entry directory (from :func:`export_seq2seq_onnx`).
    :param recipe: an onnxruntime int8 / int4 recipe.
    :returns: ``(entry directory, seconds spent, "hit" | "miss")``.
    :raises BackendUnavailableError: ``onnxruntime.quantization`` (or a package it needs) is
        missing.
    :raises BackendError: quantisation failed.
    """
    import importlib.util

    from pytest_pipeperf.backends._ort_quant import _SETTINGS, _quantize, quant_key

    parts = {"format": SEQ2SEQ_QUANT_FORMAT, "base": quant_key(export, recipe),
             "graphs": list(GRAPHS)}
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]
    entry = export.parent / f"{export.name}-{recipe}-{key[:12]}"
    if _graphs_valid(entry, key):
        return entry, 0.0, "hit"
    if importlib.util.find_spec("onnxruntime.quantization") is None:
        raise BackendUnavailableError("pipeperf: backend 'onnxruntime' recipe "
                                      f"{recipe!r} needs onnxruntime.quantization (not installed)")

    def write(tmp: Path) -> None:
        for graph in GRAPHS:
            _quantize(export / graph, tmp / graph, recipe)
        _write_graph_list(tmp)

    seconds = build_entry(entry, key, GRAPH_LIST, EXPORT_MANIFEST, write,
                          {"source": str(export), "recipe": recipe,
                           "settings": _SETTINGS[recipe], "versions":
                           {d: dist_version(d) for d in ("onnxruntime", "onnx")}},
                          failure=f"onnxruntime recipe {recipe!r} failed on the seq2seq graphs "
                                  f"of {export}")
    return entry, seconds, "miss"


def _run_session(session: Any, names: list[str], feed: Mapping[str, np.ndarray],
                 graph: str) -> list[np.ndarray]:
    try:
        return list(session.run(names, dict(feed)))
    except Exception as exc:  # ORT raises RuntimeError subclasses of its own (Fail, ...)
        shapes = {k: list(v.shape) for k, v in feed.items() if not k.startswith("past_")}
        raise BackendError(f"onnxruntime failed running {graph} with inputs {shapes}: "
                           f"{type(exc).__name__}: {exc}") from exc


class OrtSeq2SeqRunnable:
    """An encoder session and the two decoder sessions plus the tokenizer, as a generative
    runnable.

    The first step runs ``decoder_model.onnx`` (``input_ids`` = the decoder start,
    ``encoder_hidden_states``, ``encoder_attention_mask``), which returns the logits and the
    self-attention and cross-attention keys/values (``present.<layer>.<decoder|encoder>.<key|
    value>``); every later step runs ``decoder_with_past_model.onnx`` with one token, the
    self-attention cache of the step before and the first step's cross-attention cache
    (``past_key_values.<layer>.<decoder|encoder>.<key|value>``), so neither the encoder nor the
    cross-attention projections run again.

    :param encoder: the ``encoder_model.onnx`` session.
    :param first: the ``decoder_model.onnx`` session.
    :param cached: the ``decoder_with_past_model.onnx`` session.
    :param tokenizer: the model's tokenizer.
    :param info: the build's costs.
    :param start: ``decoder_start_token_id``.
    :param limit: the decoder's position count (``None``: unlimited).
    """

    def __init__(self, encoder: Any, first: Any, cached: Any, tokenizer: Any, info: BuildInfo,
                 start: int, limit: int | None) -> None:
        self._encoder = encoder
        self._first_decoder = first
        self._cached_decoder = cached
        self._tokenizer = tokenizer
        self._start = start
        self._limit = limit
        self.info = info
        self._encoder_names = {i.name for i in encoder.get_inputs()}
        # The inputs this runnable feeds each graph: exactly what optimum's export takes.
        for graph, session, fed in (
                (ENCODER_GRAPH, encoder, {"input_ids", "attention_mask"}),
                (FIRST_DECODER_GRAPH, first, {"input_ids", "encoder_hidden_states",
                                              "encoder_attention_mask"}),
                (CACHED_DECODER_GRAPH, cached, {"input_ids", "encoder_attention_mask"})):
            names = {i.name for i in session.get_inputs()}
            unknown = sorted(n for n in names - fed if not n.startswith("past_key_values."))
            if not fed <= names or unknown:
                raise BackendError(f"{graph} takes the inputs {sorted(names)}; the seq2seq "
                                   f"runnable feeds {sorted(fed)} (and past_key_values.* to "
                                   f"{CACHED_DECODER_GRAPH}): an export this version does not "
                                   "know how to run")
        self._first_outputs = [o.name for o in first.get_outputs()]
        self._cached_outputs = [o.name for o in cached.get_outputs()]
        self._cached_inputs = {i.name for i in cached.get_inputs()}
        shape = first.get_outputs()[0].shape
        self._vocab = int(shape[-1]) if isinstance(shape[-1], int) else None

    def _encode(self, batch: Batch, where: str) -> tuple[np.ndarray, np.ndarray]:
        from pytest_pipeperf.backends._hf import encode

        feed = encode(self._tokenizer, _text_batch(batch, where), self._encoder_names)
        (hidden,) = _run_session(self._encoder, ["last_hidden_state"], feed, ENCODER_GRAPH)
        return hidden, feed["attention_mask"]

    def _run(self, ids: np.ndarray, hidden: np.ndarray, mask: np.ndarray,
             past: Mapping[str, np.ndarray] | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """One decoder step: ``(logits [b, vocab], cache for the next step)``."""
        import numpy as np

        if past is None:
            names = self._first_outputs
            outputs = _run_session(self._first_decoder, names, {
                "input_ids": ids, "encoder_hidden_states": hidden,
                "encoder_attention_mask": mask}, FIRST_DECODER_GRAPH)
        else:
            names = self._cached_outputs
            feed = {"input_ids": ids, "encoder_attention_mask": mask, **past}
            outputs = _run_session(self._cached_decoder, names, feed, CACHED_DECODER_GRAPH)
        values = dict(zip(names, outputs, strict=True))
        cache = {name.replace("present.", "past_key_values.", 1): value
                 for name, value in values.items() if name.startswith("present.")}
        if past is not None:  # the cross-attention cache stays the first step's
            cache.update({k: v for k, v in past.items() if ".encoder." in k})
        missing = self._cached_inputs - {"input_ids", "encoder_attention_mask"} - set(cache)
        if missing:
            raise BackendError(f"the decoder graphs do not return the cache inputs "
                               f"{sorted(missing)} of decoder_with_past_model.onnx")
        return np.asarray(values["logits"][:, -1, :], dtype=np.float32), cache

    def _first(self, batch: Batch, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                        dict[str, np.ndarray]]:
        import numpy as np

        hidden, mask = self._encode(batch, where)
        start = np.full((hidden.shape[0], 1), self._start, dtype=np.int64)
        logits, cache = self._run(start, hidden, mask, None)
        return hidden, mask, logits, cache

    def __call__(self, batch: Batch) -> Mapping[str, np.ndarray]:
        _, _, logits, _ = self._first(batch, "__call__()")
        return {"logits": logits}

    def decode_logits(self, batch: TextBatch, tokens: np.ndarray) -> np.ndarray:
        """float32 ``[batch, steps, vocab]``: the logits after feeding each of ``tokens`` through
        the decoder cache, after the decoder-start step.

        :param batch: the encoder's texts.
        :param tokens: int64 ``[batch, steps]``.
        """
        import numpy as np

        hidden, mask, logits, cache = self._first(batch, "decode_logits()")
        fed = _check_tokens(tokens, hidden.shape[0], self._vocab or logits.shape[-1], self._limit)
        steps = []
        for j in range(fed.shape[1]):
            logits, cache = self._run(fed[:, j:j + 1], hidden, mask, cache)
            steps.append(logits)
        return np.stack(steps, axis=1)

    def generate(self, batch: TextBatch, new_tokens: int) -> GenerationRun:
        """Greedy decoding of exactly ``new_tokens`` tokens, timed per token.

        :param batch: the encoder's texts.
        :param new_tokens: tokens per sequence (>= 1).
        """
        import numpy as np

        _check_length(new_tokens, self._limit, "generate()", "new_tokens")
        stamps: list[int] = []
        chosen: list[np.ndarray] = []
        t0 = time.perf_counter_ns()
        hidden, mask, logits, cache = self._first(batch, "generate()")
        ids = logits.argmax(axis=-1)
        chosen.append(ids)
        stamps.append(time.perf_counter_ns() - t0)
        for _ in range(new_tokens - 1):
            logits, cache = self._run(ids[:, None].astype(np.int64), hidden, mask, cache)
            ids = logits.argmax(axis=-1)
            chosen.append(ids)
            stamps.append(time.perf_counter_ns() - t0)
        return GenerationRun(np.stack(chosen, axis=1).astype(np.int64), tuple(stamps))

    def close(self) -> None:
        self._encoder = self._first_decoder = self._cached_decoder = None


def _session(ort: Any, path: Path, threads: int | None) -> Any:
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # ORT raises RuntimeError subclasses of its own (Fail, ...)
        raise BackendError(f"onnxruntime could not load {path}: {exc}") from exc
    got = session.get_providers()
    if not got or got[0] != providers[0]:
        raise BackendError(f"onnxruntime session asked for {providers} but runs on {got}")
    return session


def build_ort_seq2seq(model: ModelSpec, precision: Precision, device: Device,
                      context: BuildContext,
                      task_export_key: Callable[[str, str], str]) -> OrtSeq2SeqRunnable:
    """The ``onnxruntime`` backend's build for ``text2text-generation`` / ``summarization``
    (CPU execution provider).

    :param model: the model directory and task.
    :param precision: fp32, or int8 / int4 (a recipe of ``backends/_ort_quant.py`` on the three
        graphs).
    :param device: ``cpu`` (the GPU providers are not wired for these graphs yet).
    :param context: cache directory, threads and the chosen recipes.
    :param task_export_key: ``onnxruntime.task_export_key``.
    :raises BackendUnavailableError: onnxruntime / optimum are missing, or a GPU was asked for.
    :raises BackendError: the model is not an encoder-decoder, or export / load failed.
    """
    from pytest_pipeperf.backends._hf import load_tokenizer
    from pytest_pipeperf.backends._ort_quant import onnx_bytes, ort_recipes
    from pytest_pipeperf.recipe import select

    if device.kind != "cpu":
        raise BackendUnavailableError(f"pipeperf: backend 'onnxruntime' runs "
                                      f"{model.task.value} on cpu only in this version")
    config = _config(model.path)
    if config.get("is_encoder_decoder") is not True:
        raise _not_encoder_decoder(model, config)
    start_id, limit = _start_token(config, model.path), _position_limit(config)
    try:
        import onnxruntime as ort
    except (ImportError, OSError) as exc:
        raise BackendUnavailableError(
            f"pipeperf: backend 'onnxruntime' cannot import onnxruntime ({exc})") from exc
    entry, export_s, cache = export_seq2seq_onnx(model, context.cache_dir, task_export_key)
    recipe = select("onnxruntime", precision, ort_recipes(precision), context.recipes)
    if recipe is None and precision is not Precision.FP32:
        raise BackendError(f"backend 'onnxruntime' has no {precision.value} recipe")
    notes: dict[str, str | int | float] = {}
    if recipe is not None:
        entry, quantize_s, quantize_cache = quantize_seq2seq(entry, recipe)
        notes.update(recipe=recipe, quantize_s=quantize_s, quantize_cache=quantize_cache)
    start = time.perf_counter()
    encoder = _session(ort, entry / ENCODER_GRAPH, context.threads)
    first = _session(ort, entry / FIRST_DECODER_GRAPH, context.threads)
    cached = _session(ort, entry / CACHED_DECODER_GRAPH, context.threads)
    tokenizer = load_tokenizer(model)
    info = BuildInfo(load_s=time.perf_counter() - start, export_s=export_s, export_cache=cache)
    info.notes.update(notes)
    info.notes["onnx"] = str(entry / CACHED_DECODER_GRAPH)
    info.notes["model_bytes"] = sum(onnx_bytes(entry / graph) for graph in GRAPHS)
    info.notes["providers"] = ",".join(cached.get_providers())
    return OrtSeq2SeqRunnable(encoder, first, cached, tokenizer, info, start_id, limit)
