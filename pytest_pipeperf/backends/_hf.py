"""Helpers shared by the Hugging Face based backends (imported lazily by them)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_pipeperf.backends.base import (
    BackendError,
    Batch,
    BuildInfo,
    ImageBatch,
    ModelSpec,
    Task,
    TextBatch,
)

if TYPE_CHECKING:
    import numpy as np

_HASH_CACHE: dict[tuple[str, float, int], str] = {}


def load_tokenizer(model: ModelSpec) -> Any:
    """The model's tokenizer, from its local directory only; ``None`` for an image task, whose
    :class:`~pytest_pipeperf.backends.base.ImageBatch` already holds the model's input."""
    if model.task.modality == "image":
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(  # type: ignore[no-untyped-call]
            str(model.path), local_files_only=True, trust_remote_code=model.trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot load the tokenizer from {model.path}: {exc}") from exc


def encode(tokenizer: Any, batch: Batch, names: Collection[str],
           task: Task | None = None) -> dict[str, np.ndarray]:
    """The model's inputs for ``batch``, keeping only those in ``names``.

    A :class:`~pytest_pipeperf.backends.base.TextBatch` is tokenised into int64 numpy arrays
    (``(question, context)`` pairs together, truncating only the context); an
    :class:`~pytest_pipeperf.backends.base.ImageBatch` becomes ``{"pixel_values": ...}`` as given.
    When ``names`` holds ``position_ids`` and the tokenizer gives none, they are derived from the
    attention mask (:func:`position_ids`), as transformers does for decoder-only models.

    :param tokenizer: from :func:`load_tokenizer`: ``None`` for an image model.
    :param names: the inputs the model takes (its forward's arguments, the graph's inputs).
    :param task: the pipeline's task, to check the texts fit it (pairs for question-answering
        only; a mask token in every text for fill-mask); ``None`` checks nothing.
    :raises BackendError: for texts given to an image model, images given to a text model, an
        empty batch, or texts that do not fit ``task``.
    """
    if isinstance(batch, ImageBatch):
        if tokenizer is not None or "pixel_values" not in names:
            raise BackendError("this pipeline runs a text model, which takes texts, not images; "
                               "pass texts, e.g. pipeperf.inputs.texts(n=8)")
        return {"pixel_values": batch.pixel_values}
    if tokenizer is None:
        raise BackendError("this pipeline runs an image model, which takes images, not texts; "
                           "pass images, e.g. pipeperf.inputs.images(n=8, size=224)")
    if not isinstance(batch, TextBatch):
        raise BackendError(f"this pipeline runs a text model, which takes texts, not "
                           f"{type(batch).__name__}; pass texts, e.g. pipeperf.inputs.texts(n=8)")
    if not batch.texts:
        raise BackendError("cannot run an empty batch")
    problem = text_problem(task, batch.texts) if task is not None else None
    if problem:
        raise BackendError(problem)
    texts: list[Any] = list(batch.texts)
    args: tuple[Any, ...] = (texts,)
    truncation: bool | str = True
    if isinstance(texts[0], tuple):
        args = ([q for q, _ in texts], [c for _, c in texts])
        truncation = "only_second"
    kwargs: dict[str, Any] = {"padding": True, "truncation": truncation, "return_tensors": "np"}
    if batch.max_length is not None:
        kwargs.update(padding="max_length", max_length=batch.max_length)
    try:
        enc = tokenizer(*args, **kwargs)
    except Exception as exc:  # tokenizers raises its own types (e.g. "second sequence not long enough")
        if truncation == "only_second" and "runcat" in str(exc):
            raise BackendError(f"cannot tokenise the (question, context) pairs to "
                               f"{batch.max_length} tokens, truncating only the context: {exc}; "
                               "use a longer seq_len or shorter questions") from exc
        raise BackendError(f"the tokenizer failed: {type(exc).__name__}: {exc}") from exc
    feed = {k: v.astype("int64") for k, v in enc.items() if k in names}
    if "position_ids" in names and "position_ids" not in feed and "attention_mask" in enc:
        feed["position_ids"] = position_ids(enc["attention_mask"])
    if task is Task.FILL_MASK:
        mask_positions(tokenizer, feed)  # every text has a mask token left after truncation
    return feed


def text_problem(task: Task, texts: Sequence[object]) -> str | None:
    """Why ``texts`` do not fit ``task`` (a message naming the fix), or ``None`` when they do.

    Question-answering takes ``(question, context)`` string pairs, every other text task plain
    strings; the fill-mask check of the mask token needs the tokenizer (see :func:`encode`).
    """
    def pair(item: object) -> bool:
        return isinstance(item, tuple) and len(item) == 2 and all(isinstance(s, str) for s in item)

    if task.paired:
        if not all(pair(t) for t in texts):
            return ("question-answering takes (question, context) string pairs; use e.g. "
                    "pipeperf.inputs.questions(n=8, seq_len=128)")
        return None
    if not all(isinstance(t, str) for t in texts):
        if any(pair(t) for t in texts):
            return (f"{task.value} takes texts, not (question, context) pairs (only "
                    "question-answering does); use e.g. pipeperf.inputs.texts(n=8)")
        return "inputs must be strings"
    return None


def position_ids(attention_mask: np.ndarray) -> np.ndarray:
    """Position ids from an attention mask, as transformers derives them for decoder-only models:
    each real token's index among the real tokens of its row, ``1`` on padding (so left- and
    right-padded rows give their tokens the same positions).

    :param attention_mask: ``[batch, sequence]`` of 0/1.
    :returns: int64 ``[batch, sequence]``.
    """
    import numpy as np

    mask = np.asarray(attention_mask, dtype=np.int64)
    positions = np.cumsum(mask, axis=-1) - 1
    positions[mask == 0] = 1
    return positions


def is_decoder_only(config: Any) -> bool:
    """Whether a transformers config is a decoder-only (causal) model such as GPT-2 or Llama:
    not encoder-decoder, with a causal-LM head class and no masked-LM one (which tells BERT-like
    encoders, that also have a causal-LM head, apart)."""
    if getattr(config, "is_encoder_decoder", False):
        return False
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    kind = getattr(config, "model_type", "")
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def forward_inputs(model: Any, tokenizer: Any) -> set[str]:
    """The inputs to give a transformers model: what its tokenizer emits and its ``forward``
    names as an argument (a DistilBERT model gets no ``token_type_ids``), plus ``position_ids``
    for a decoder-only model (derived from the attention mask by :func:`encode`, as its ONNX
    export requires them), or ``{"pixel_values"}`` for an image model."""
    import inspect

    if tokenizer is None:
        return {"pixel_values"}
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return set(tokenizer.model_input_names)
    named = {n for n, p in params.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    names = {n for n in tokenizer.model_input_names if n in named}
    if not names:  # a forward(*args, **kwargs) wrapper names nothing: give what the tokenizer does
        return set(tokenizer.model_input_names)
    if "position_ids" in named and is_decoder_only(getattr(model, "config", None)):
        names.add("position_ids")
    return names


def mask_positions(tokenizer: Any, feed: Mapping[str, np.ndarray]) -> np.ndarray:
    """Where the mask tokens are in a fill-mask batch: a bool ``[batch, sequence]`` array.

    :raises BackendError: when the tokenizer has no mask token or a text has none (left).
    """
    token_id = getattr(tokenizer, "mask_token_id", None)
    if token_id is None:
        raise BackendError("fill-mask needs a tokenizer with a mask token; this one has none")
    found: np.ndarray = feed["input_ids"] == token_id
    missing = [i for i, row in enumerate(found) if not row.any()]
    if missing:
        raise BackendError(
            f"fill-mask: text(s) {missing} of the batch have no mask token "
            f"{tokenizer.mask_token!r} (after truncation); use pipeperf.inputs.masked(n=8, "
            f"mask_token={tokenizer.mask_token!r}) or put it in every text")
    return found


def task_outputs(task: Task, outputs: Mapping[str, np.ndarray], tokenizer: Any,
                 feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The task's outputs (:attr:`Task.output_names`) from a run's raw outputs, as float32; for
    fill-mask only the logits rows of the mask tokens (``[masks in the batch, vocabulary]``),
    which is what the task reads and keeps the reference cache small."""
    import numpy as np

    result = {name: np.asarray(outputs[name], dtype=np.float32) for name in task.output_names}
    if task is Task.FILL_MASK:
        result["logits"] = np.ascontiguousarray(result["logits"][mask_positions(tokenizer, feed)])
    return result


def missing_inputs(required: Collection[str], feed: Mapping[str, object], task: Task,
                   engine: str) -> None:
    """Fail clearly when a graph needs inputs the pipeline does not produce.

    :param required: the graph's input names.
    :param engine: what runs the graph, for the message (``the ONNX graph``).
    :raises BackendError: naming the missing inputs; for ``decoder_input_ids`` saying that the
        model is encoder-decoder and which task builds it.
    """
    missing = sorted(n for n in required if n not in feed)
    if not missing:
        return
    if "decoder_input_ids" in missing and not task.generative:
        raise BackendError(encoder_decoder_message(task, engine))
    raise BackendError(f"{engine} needs inputs {missing} that the pipeline does not produce "
                       f"(it gives {sorted(feed)})")


def encoder_decoder_message(task: Task, engine: str) -> str:
    """The message for an encoder-decoder model (BART, T5) built for an encoder task."""
    return (f"the model is encoder-decoder ({engine} for {task.value} needs decoder_input_ids); "
            "build it with task=\"text2text-generation\" (or \"summarization\") instead")


def loading_notes(info: BuildInfo, loading: Mapping[str, Any]) -> None:
    """Record transformers' load report (``from_pretrained(..., output_loading_info=True)``) in
    ``info.notes["newly_initialized"]``: the weights the checkpoint lacked (or had in another
    shape), which the load initialised at random, so two builds disagree."""
    names = [str(k) for k in loading.get("missing_keys", ())]
    names += [str(m[0]) if isinstance(m, tuple) else str(m)
              for m in loading.get("mismatched_keys", ())]
    if names:
        shown = ", ".join(sorted(names)[:8])
        more = f" (+{len(names) - 8} more)" if len(names) > 8 else ""
        info.notes["newly_initialized"] = shown + more


@contextlib.contextmanager
def newly_initialized_log() -> Iterator[set[str]]:
    """Collect the weights transformers reports as newly initialised while a model loads
    somewhere out of reach (optimum's export loads the model itself).

    transformers logs them at warning level from ``transformers.modeling_utils`` ("Some weights
    of ... are newly initialized: [...]", or "... because the shapes did not match: - name:
    found shape ..."); the logger's level is lowered to warning for the duration if needed.
    """
    import ast
    import logging
    import re

    found: set[str] = set()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage()
            if "newly initialized" not in text:
                return
            listed = re.search(r"newly initialized: (\[.*?\])", text, re.S)
            if listed:
                with contextlib.suppress(ValueError, SyntaxError):
                    found.update(str(n) for n in ast.literal_eval(listed.group(1)))
            found.update(re.findall(r"^- (\S+): found shape", text, re.M))

    logger = logging.getLogger("transformers.modeling_utils")
    handler = Collect(logging.WARNING)
    level = logger.level
    logger.addHandler(handler)
    if level == logging.NOTSET or level > logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        yield found
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def parity_hint(*infos: BuildInfo) -> str:
    """The likely cause of a parity failure the builds' notes know of, or ``""``.

    Today: weights the checkpoint lacked, newly initialised at random when the model was loaded
    (``BuildInfo.notes["newly_initialized"]``, see :func:`loading_notes`), e.g. a classifier head
    on a checkpoint saved without one.

    :param infos: the candidate's and the reference's build infos.
    """
    for info in infos:
        names = info.notes.get("newly_initialized")
        if names:
            return (f"; likely cause: the checkpoint lacks weights that transformers newly "
                    f"initialised at random when loading it ({names}), so every build differs; "
                    "use a checkpoint trained for this task or a task its weights cover "
                    "(e.g. feature-extraction)")
    return ""


def model_digest(path: Path) -> str:
    """SHA-256 over every file (relative name and bytes) of a model directory.

    Cached per process by (path, newest mtime, file count), so a changed model re-hashes.
    """
    files = sorted(p for p in path.rglob("*") if p.is_file())
    key = (str(path.resolve()), max((p.stat().st_mtime for p in files), default=0.0), len(files))
    if key not in _HASH_CACHE:
        digest = hashlib.sha256()
        for file in files:
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
            with file.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
            digest.update(b"\0")
        _HASH_CACHE[key] = digest.hexdigest()
    return _HASH_CACHE[key]


def set_torch_threads(threads: int | None) -> None:
    """Apply the intra-op thread count to torch (process-wide)."""
    if threads is None:
        return
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
