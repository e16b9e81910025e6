"""A ``transformers.Pipeline`` as a benchmark subject: run it as users call it, view its output
task by task for parity, and build its eager fp32 CPU reference.

transformers and torch are imported inside the functions that need them; :func:`is_pipeline`
imports nothing.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_pipeperf.backends.base import BackendError
from pytest_pipeperf.structured import is_tensor, leaves

if TYPE_CHECKING:
    from transformers import Pipeline

GENERATIVE_TASKS = frozenset({"text-generation", "text2text-generation", "summarization",
                              "translation"})
# the tasks whose __call__ unwraps a one-item list (returns outputs[0])
_UNWRAPS_ONE = frozenset({"question-answering", "fill-mask"})
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                 "pytorch_model.bin.index.json")


def is_pipeline(obj: Any) -> bool:
    """Whether ``obj`` is a ``transformers.Pipeline``, without importing transformers.

    An object can only be a pipeline once ``transformers.pipelines`` was imported, so nothing is
    imported here: when that module is not loaded the answer is ``False``.

    :param obj: a subject given to ``pipeperf.bench()``.
    """
    if "transformers" not in sys.modules:
        return False
    base = sys.modules.get("transformers.pipelines.base")
    cls = getattr(base, "Pipeline", None)
    return isinstance(cls, type) and isinstance(obj, cls)


def task_of(pipe: Pipeline) -> str:
    """The pipeline's task: ``pipe.task``, or for a pipeline built from its class directly the
    task ``transformers`` registers that class for; ``""`` when neither is known.

    :param pipe: the pipeline.
    """
    task = getattr(pipe, "task", "") or ""
    if task:
        return str(task)
    from transformers.pipelines import SUPPORTED_TASKS

    for name, entry in SUPPORTED_TASKS.items():
        if isinstance(entry, dict) and entry.get("impl") is type(pipe):
            return str(name)
    return ""


def _model_path(pipe: Pipeline) -> str:
    model = getattr(pipe, "model", None)
    name = getattr(model, "name_or_path", "") or ""
    if not name:
        name = getattr(getattr(model, "config", None), "_name_or_path", "") or ""
    return str(name)


def _short_name(name: str) -> str:
    """``bert-cls`` for ``/tmp/models/bert-cls/``, ``sst2`` for the hub id ``org/sst2``."""
    return name.rstrip("/").rsplit("/", 1)[-1]


def describe(pipe: Pipeline) -> dict[str, str]:
    """What the report says about the subject: class, task, model, device, framework, dtype.

    :param pipe: the pipeline.
    :returns: e.g. ``{"class": "TextClassificationPipeline", "task": "text-classification",
        "model": "bert-cls", "device": "cpu", "framework": "pt", "dtype": "torch.float32"}``;
        the model is the last part of its directory or hub id (``"?"`` if unknown); ``dtype``
        only when the model has one.
    """
    info = {
        "class": type(pipe).__name__,
        "task": task_of(pipe) or "?",
        "model": _short_name(_model_path(pipe)) or "?",
        "device": str(getattr(pipe, "device", "?")),
        "framework": str(getattr(pipe, "framework", "?")),
    }
    dtype = getattr(getattr(pipe, "model", None), "dtype", None)
    if dtype is not None:
        info["dtype"] = str(dtype)
    return info


def call_kwargs(task: str) -> dict[str, Any]:
    """What :func:`run` adds to the user's call for deterministic task output: greedy decoding
    (``do_sample=False``) and token ids (``return_tensors=True``) for the generative tasks,
    nothing for the others.

    :param task: the pipeline's task.
    """
    if task in GENERATIVE_TASKS:
        return {"do_sample": False, "return_tensors": True}
    return {}


def _check_batch(task: str, batch: Any, batch_size: int) -> None:
    if not isinstance(batch, list):
        raise BackendError(f"a pipeline subject is called with a list of inputs, got "
                           f"{type(batch).__name__}; pass e.g. a list of texts")
    if not batch:
        raise BackendError("cannot run a pipeline on an empty batch")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise BackendError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if task == "question-answering":
        for i, item in enumerate(batch):
            if not (isinstance(item, dict) and {"question", "context"} <= set(item)):
                raise BackendError(
                    f"a question-answering pipeline takes items {{'question': ..., 'context': "
                    f"...}}; batch[{i}] is {item!r:.80}")


def run(pipe: Pipeline, batch: list[Any], batch_size: int) -> list[Any]:
    """Call the pipeline as users do, ``pipe(batch, batch_size=batch_size)``, and return one
    output per item (question-answering: ``pipe(question=[...], context=[...], batch_size=...)``
    from the items' fields, the form ``transformers`` keeps).

    The generative tasks also get :func:`call_kwargs` (greedy, token ids): a benchmark needs
    deterministic output, so a ``do_sample=True`` the user set is overridden; nothing else is
    added. One-item batches that ``transformers`` unwraps (question-answering and fill-mask
    return ``outputs[0]``; a dict instead of a list) are wrapped back into a list.

    :param pipe: the pipeline.
    :param batch: the inputs: texts, images, or for question-answering
        ``{"question": ..., "context": ...}`` dicts.
    :param batch_size: the pipeline's ``batch_size``.
    :raises BackendError: for a batch that is not a non-empty list (or of QA dicts), a bad
        batch size, or a pipeline that returns a different number of outputs than inputs.
    """
    task = task_of(pipe)
    _check_batch(task, batch, batch_size)
    call: Any = pipe  # typed with one positional ``inputs``; QA takes keywords
    if task == "question-answering":  # the keyword form; a list of dicts is deprecated
        out = call(question=[item["question"] for item in batch],
                   context=[item["context"] for item in batch], batch_size=batch_size)
    else:
        out = call(batch, batch_size=batch_size, **call_kwargs(task))
    if len(batch) == 1 and (task in _UNWRAPS_ONE or isinstance(out, dict)):
        out = [out]
    if not isinstance(out, list) or len(out) != len(batch):
        got = f"{len(out)} outputs" if isinstance(out, list) else f"a {type(out).__name__}"
        raise BackendError(f"the {task or type(pipe).__name__} pipeline returned {got} for a "
                           f"batch of {len(batch)} inputs")
    return out


def _top(item: Any, what: str) -> dict[str, Any]:
    """The first (highest-scoring) of a pipeline's ranked candidates, or the one dict given."""
    if isinstance(item, list):
        if not item:
            raise ValueError(f"the pipeline returned no {what} for an input")
        item = item[0]
    if not isinstance(item, dict):
        raise ValueError(f"expected a {what} dict from the pipeline, got {item!r:.80}")
    return item


def _pick(item: dict[str, Any], exact: tuple[str, ...], what: str) -> dict[str, Any]:
    missing = [k for k in (*exact, "score") if k not in item]
    if missing:
        raise ValueError(f"the pipeline's {what} lacks {missing}; it has {sorted(item)}")
    view = {k: item[k] for k in exact}
    view["score"] = float(item["score"])
    return view


def _entities(item: Any) -> list[dict[str, Any]]:
    if not isinstance(item, list):
        raise ValueError(f"expected a list of entities per input, got {item!r:.80}")
    found = []
    for entity in item:
        if not isinstance(entity, dict):
            raise ValueError(f"expected an entity dict from the pipeline, got {entity!r:.80}")
        key = "entity_group" if "entity_group" in entity else "entity"
        found.append(_pick(entity, ("word", key, "start", "end"), "entity"))
    return found


def _fill_mask(item: Any) -> Any:
    if isinstance(item, list) and item and isinstance(item[0], list):  # several masks
        return [_fill_mask(mask) for mask in item]
    return _pick(_top(item, "fill-mask candidate"), ("token", "token_str"), "fill-mask candidate")


def _generated(item: Any) -> Any:
    sequences = item if isinstance(item, list) else [item]
    views = []
    for seq in sequences:
        if not isinstance(seq, dict):
            raise ValueError(f"expected a generated-sequence dict, got {seq!r:.80}")
        ids = [k for k in seq if k.endswith("_token_ids")]
        texts = [k for k in seq if k.endswith("_text")]
        if ids:
            value = seq[ids[0]]
            views.append({ids[0]: value.tolist() if is_tensor(value) else value})
        elif texts:
            views.append({texts[0]: seq[texts[0]]})
        else:
            raise ValueError(f"a generated sequence has neither token ids nor text: {sorted(seq)}")
    return views[0] if len(views) == 1 else views


def _embedding(item: Any) -> Any:
    import numpy as np

    if is_tensor(item):
        return item
    try:
        return np.asarray(item, dtype=np.float32)
    except ValueError as exc:
        raise ValueError(f"a feature-extraction output is not a rectangular array: {exc}") \
            from exc


def task_view(task: str, raw: list[Any]) -> Any:
    """What parity compares for one task, per item (see :func:`run` for ``raw``).

    - text / image classification: the top ``label`` (exact) and its ``score``;
    - token classification: every entity's ``word``, ``entity`` (or ``entity_group`` when
      aggregated), ``start`` and ``end`` (exact) and ``score``; the number of entities counts;
    - question answering: the top ``answer``, ``start``, ``end`` (exact) and ``score``;
    - fill-mask: the top ``token`` and ``token_str`` (exact) and ``score``, per mask;
    - text generation, text2text generation, summarization, translation: the generated token
      ids (``generated_token_ids``, ``summary_token_ids``, ...; exact), or the text (exact) when
      only text came back;
    - feature extraction: the embeddings as float arrays;
    - any other task: ``raw`` itself, checked to flatten with
      :func:`~pytest_pipeperf.structured.leaves`.

    Scores are plain floats (compared with the precision's tolerance by
    :func:`~pytest_pipeperf.structured.compare_structured`); everything exact must be equal.

    :param task: the pipeline's task (:func:`task_of`).
    :param raw: the per-item outputs from :func:`run`.
    :raises ValueError: when ``raw`` does not have the task's shape (the check layer reports
        it as a parity error, as it does the ``TypeError`` below).
    :raises TypeError: from :func:`~pytest_pipeperf.structured.leaves`, for an unknown task's
        output that parity cannot compare.
    """
    if not isinstance(raw, list):
        raise ValueError(f"a pipeline's outputs are a list with one entry per input, got a "
                         f"{type(raw).__name__}")
    if task in ("text-classification", "sentiment-analysis", "image-classification"):
        return [_pick(_top(item, "class"), ("label",), "class") for item in raw]
    if task in ("token-classification", "ner"):
        return [_entities(item) for item in raw]
    if task == "question-answering":
        return [_pick(_top(item, "answer"), ("answer", "start", "end"), "answer") for item in raw]
    if task == "fill-mask":
        return [_fill_mask(item) for item in raw]
    if task in GENERATIVE_TASKS:
        return [_generated(item) for item in raw]
    if task in ("feature-extraction", "image-feature-extraction"):
        return [_embedding(item) for item in raw]
    leaves(raw)
    return raw


def _has_pytorch_weights(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in _WEIGHT_FILES)


def reference_for(pipe: Pipeline) -> Pipeline | None:
    """An eager fp32 CPU pipeline of the same task and settings, the subject's parity reference.

    Built with ``transformers.pipeline(task, model=<dir>, tokenizer=pipe.tokenizer,
    device="cpu", dtype=torch.float32)`` (and the subject's image processor / feature extractor)
    when the subject's model was loaded from a local directory that holds PyTorch weights; it
    never downloads (``local_files_only``). The subject's call settings (``top_k``,
    ``aggregation_strategy``, ``max_new_tokens``, ...) and generation config are copied, so both
    answer the same question.

    :param pipe: the subject pipeline.
    :returns: the reference, or ``None`` when none can be built here (a hub id, a directory
        without PyTorch weights such as an ONNX export, an unknown task, or a load that fails);
        the caller then asks for ``reference=``.
    """
    task = task_of(pipe)
    path = Path(_model_path(pipe))
    if not task or not _has_pytorch_weights(path):
        return None
    import torch
    import transformers

    build: Any = transformers.pipeline  # typed by overloads on a literal task
    parts = {name: getattr(pipe, name, None)
             for name in ("tokenizer", "image_processor", "feature_extractor")}
    try:
        reference: Pipeline = build(
            task, model=str(path), device="cpu", dtype=torch.float32,
            model_kwargs={"local_files_only": True},
            **{name: value for name, value in parts.items() if value is not None})
    except (OSError, ValueError, KeyError, RuntimeError, ImportError):  # a load that fails here
        return None
    for params in ("_preprocess_params", "_forward_params", "_postprocess_params"):
        if isinstance(getattr(pipe, params, None), dict):
            setattr(reference, params, dict(getattr(pipe, params)))
    if getattr(pipe, "generation_config", None) is not None:
        reference.generation_config = copy.deepcopy(pipe.generation_config)
    return reference
