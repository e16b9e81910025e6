"""Causal language models for ``text-generation``: what the ``eager`` and ``onnxruntime``
backends build (a :class:`~pytest_pipeperf.backends.base.GenerativeRunnable`).

A :class:`CausalStep` runs one forward pass of a batch through the model with its key/value
cache (:class:`TorchStep`: transformers' ``AutoModelForCausalLM`` with its ``DynamicCache``;
:class:`OrtStep`: optimum's ``text-generation-with-past`` export, the cache bound in ONNX Runtime
with IO binding). :class:`CausalLMRunnable` drives it: prompts are tokenised with **left
padding**, ``position_ids`` follow the attention mask (``cumsum(mask) - 1``, so a padded row's
first real token is position 0), and every step appends one column to the mask. Greedy decoding
always produces exactly ``new_tokens`` tokens per sequence (end-of-sequence does not stop a run),
so runs compare. The generation scenario (:mod:`pytest_pipeperf.scenarios.generation`) runs the
same steps with a batch of one.

Quantised eager builds: the bitsandbytes recipes use the deployment guide's configurations
(``BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=6.0)``; NF4 with double quantisation
and bf16 compute), the torchao recipes those of :mod:`pytest_pipeperf.backends._quant` after
GPT-2's ``Conv1D`` projections are replaced by equivalent ``nn.Linear`` layers (torchao
quantises ``nn.Linear`` only). A build checks that quantised layers are really there and records
their count (``quantized_layers``) and ``model_bytes`` in its notes.

torch, transformers, optimum and onnxruntime are imported inside the functions.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

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

EXPORT_TASK = "text-generation-with-past"
_PAST = "past_key_values."
_KNOWN_INPUTS = ("input_ids", "attention_mask", "position_ids")


# -- one forward pass with the cache ------------------------------------------------------------

class CausalStep:
    """One cached forward pass of a causal LM on a backend.

    :attr max_positions: the model's context length (``None`` when the config does not say).
    """

    max_positions: int | None = None

    def forward(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray,
                cache: Any) -> tuple[Any, Any]:
        """Feed ``ids`` (int64 ``[B, n]``) after the cached positions.

        :param mask: int64 ``[B, past + n]``: 1 for real tokens, 0 for left padding.
        :param positions: int64 ``[B, n]``: each new token's position.
        :param cache: the previous call's cache, ``None`` for the prompt.
        :returns: the last position's logits (backend form, ``[B, vocab]``) and the grown cache.
        """
        raise NotImplementedError

    def argmax(self, logits: Any) -> np.ndarray:
        """The greedy tokens, int64 ``[B]`` on the host (waits for the device)."""
        raise NotImplementedError

    def numpy(self, logits: Any) -> np.ndarray:
        """The logits as a float32 host array ``[B, vocab]``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the model or session."""


def _positions_of(config: Any, *names: str) -> int | None:
    for name in names:
        value = config.get(name) if isinstance(config, dict) else getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class TorchStep(CausalStep):
    """A transformers causal LM (any dtype, possibly quantised) in inference mode.

    :param model: the loaded ``AutoModelForCausalLM`` on ``device``, in eval mode.
    :param device: the torch device string (``cpu``, ``cuda:0``).
    """

    def __init__(self, model: Any, device: str) -> None:
        import torch

        self._torch = torch
        self.model = model
        self._device = device
        self.max_positions = _positions_of(model.config, "n_positions", "max_position_embeddings")

    def forward(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray,
                cache: Any) -> tuple[Any, Any]:
        torch = self._torch
        device = self._device
        with torch.inference_mode():
            out = self.model(input_ids=torch.from_numpy(ids).to(device),
                             attention_mask=torch.from_numpy(mask).to(device),
                             position_ids=torch.from_numpy(positions).to(device),
                             past_key_values=cache, use_cache=True)
        return out.logits[:, -1], out.past_key_values

    def argmax(self, logits: Any) -> np.ndarray:
        result: np.ndarray = logits.argmax(-1).cpu().numpy().astype("int64")
        return result

    def numpy(self, logits: Any) -> np.ndarray:
        result: np.ndarray = logits.float().cpu().numpy()
        return result

    def close(self) -> None:
        self.model = None


class OrtStep(CausalStep):
    """An ONNX Runtime session of optimum's ``text-generation-with-past`` export.

    Each step's ``present.*`` outputs are bound as the next step's ``past_key_values.*`` inputs
    through IO binding (they stay on the session's device); only the logits come to the host.
    Every input the graph declares is fed: ``input_ids``, ``attention_mask``, ``position_ids``
    and the cache; a graph wanting anything else is refused.

    :param session: the ``InferenceSession``.
    :param device_type: where the cache lives: ``cpu`` or ``cuda``.
    :param device_id: the GPU index for ``cuda``.
    :param config: the model's ``config.json`` contents (heads and hidden size of the cache).
    :raises BackendError: for a graph that is not such an export.
    """

    def __init__(self, session: Any, device_type: str, device_id: int,
                 config: dict[str, Any]) -> None:
        import numpy as np
        import onnxruntime as ort

        self._np = np
        self._ort = ort
        self._session = session
        self._device = (device_type, device_id)
        self.max_positions = _positions_of(config, "n_positions", "max_position_embeddings")
        inputs = session.get_inputs()
        names = [i.name for i in inputs]
        self._past = [n for n in names if n.startswith(_PAST)]
        self._present = ["present." + n[len(_PAST):] for n in self._past]
        outputs = {o.name for o in session.get_outputs()}
        missing = [n for n in ["logits", *self._present] if n not in outputs]
        if not self._past or missing or "input_ids" not in names:
            raise BackendError(
                f"the ONNX graph is not a {EXPORT_TASK} export: inputs {names}, outputs "
                f"{sorted(outputs)}; it needs input_ids, past_key_values.* and logits, present.*")
        unknown = [n for n in names if n not in _KNOWN_INPUTS and not n.startswith(_PAST)]
        if unknown:
            raise BackendError(f"the {EXPORT_TASK} graph wants inputs this runner does not feed: "
                               f"{unknown} (it feeds {', '.join(_KNOWN_INPUTS)} and the cache)")
        self._mask = "attention_mask" in names
        self._positions_input = "position_ids" in names
        heads = int(config.get("n_head") or config.get("num_attention_heads") or 0)
        hidden = int(config.get("n_embd") or config.get("hidden_size") or 0)
        shape = next(i.shape for i in inputs if i.name == self._past[0])
        if isinstance(shape[1], int) and isinstance(shape[3], int):
            heads, head_dim = shape[1], shape[3]
        elif heads and hidden:
            head_dim = hidden // heads
        else:
            raise BackendError(f"cannot tell the KV cache's heads and head size from the graph "
                               f"({self._past[0]} shape {shape}) or config.json")
        self._cache_shape = (heads, head_dim)

    def forward(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray,
                cache: Any) -> tuple[Any, Any]:
        np = self._np
        device_type, device_id = self._device
        binding = self._session.io_binding()
        binding.bind_cpu_input("input_ids", np.ascontiguousarray(ids, dtype=np.int64))
        if self._mask:
            binding.bind_cpu_input("attention_mask", np.ascontiguousarray(mask, dtype=np.int64))
        if self._positions_input:
            binding.bind_cpu_input("position_ids",
                                   np.ascontiguousarray(positions, dtype=np.int64))
        if cache is None:
            heads, head_dim = self._cache_shape
            empty = np.zeros((ids.shape[0], heads, 0, head_dim), dtype=np.float32)
            value = self._ort.OrtValue.ortvalue_from_numpy(empty, device_type, device_id)
            cache = [value] * len(self._past)
        for name, value in zip(self._past, cache):
            binding.bind_ortvalue_input(name, value)
        binding.bind_output("logits", "cpu")
        for name in self._present:
            binding.bind_output(name, device_type, device_id)
        self._session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        return outputs[0].numpy()[:, -1], list(outputs[1:])

    def argmax(self, logits: Any) -> np.ndarray:
        result: np.ndarray = self._np.argmax(logits, axis=-1).astype(self._np.int64)
        return result

    def numpy(self, logits: Any) -> np.ndarray:
        result: np.ndarray = self._np.asarray(logits, dtype=self._np.float32)
        return result

    @property
    def providers(self) -> list[str]:
        """The session's execution providers, in priority order."""
        return list(self._session.get_providers()) if self._session is not None else []

    def close(self) -> None:
        self._session = None


# -- the runnable -------------------------------------------------------------------------------

def prompt_positions(mask: np.ndarray) -> np.ndarray:
    """``position_ids`` of a left-padded prompt: ``cumsum(mask) - 1`` on real tokens, 1 on
    padding (as transformers' ``generate`` does; padded positions are masked anyway).

    :param mask: int64 ``[B, n]`` attention mask (1 real, 0 padding).
    """
    import numpy as np

    positions = np.cumsum(mask, axis=1) - 1
    result: np.ndarray = np.where(mask == 0, 1, positions).astype(np.int64)
    return result


class CausalLMRunnable:
    """Greedy batched decoding with the KV cache (a ``GenerativeRunnable``).

    :param step: the model's cached forward pass.
    :param tokenizer: its tokenizer; switched to left padding (and to the end-of-sequence token
        as padding when it has no pad token).
    :param info: the build's costs and notes.
    """

    def __init__(self, step: CausalStep, tokenizer: Any, info: BuildInfo) -> None:
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        limit = step.max_positions
        if limit is not None and getattr(tokenizer, "model_max_length", 0) > limit:
            tokenizer.model_max_length = limit  # truncation needs a limit (config, not tokenizer)
        self._step = step
        self._tokenizer = tokenizer
        self.info = info

    @property
    def step(self) -> CausalStep:
        """The cached forward pass this runnable drives."""
        return self._step

    def _encode(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        import numpy as np

        from pytest_pipeperf.backends._hf import encode

        if not isinstance(batch, TextBatch):
            raise BackendError("a text-generation pipeline takes texts, not images; pass e.g. "
                               "pipeperf.inputs.texts(n=8)")
        if batch.batch_size > 1 and self._tokenizer.pad_token is None:
            raise BackendError("batched generation pads prompts on the left, but the tokenizer "
                               "has neither a pad nor an end-of-sequence token; set "
                               "tokenizer.pad_token and save it with the model")
        enc = encode(self._tokenizer, batch, ("input_ids", "attention_mask"))
        ids = enc["input_ids"]
        mask = enc.get("attention_mask", np.ones_like(ids))
        empty = [i for i, row in enumerate(mask) if not row.any()]
        if ids.shape[1] == 0 or empty:
            raise BackendError(f"prompt(s) {empty or list(range(len(ids)))} tokenise into no "
                               "tokens; pass non-empty texts")
        return ids, mask.astype(np.int64)

    def _check_length(self, width: int, new_tokens: int) -> None:
        limit = self._step.max_positions
        if limit is not None and width + new_tokens > limit:
            raise BackendError(f"{width} prompt tokens + {new_tokens} new tokens exceed the "
                               f"model's {limit} positions; shorten the prompts (seq_len=) or "
                               "generate fewer tokens (new_tokens=)")

    def _prefill(self, batch: Batch, new_tokens: int) -> tuple[Any, Any, np.ndarray]:
        ids, mask = self._encode(batch)
        self._check_length(ids.shape[1], new_tokens)
        logits, cache = self._step.forward(ids, mask, prompt_positions(mask), None)
        return logits, cache, mask

    def _advance(self, tokens: np.ndarray, mask: np.ndarray,
                 cache: Any) -> tuple[Any, Any, np.ndarray]:
        import numpy as np

        positions = mask.sum(axis=1, keepdims=True).astype(np.int64)
        mask = np.concatenate([mask, np.ones((mask.shape[0], 1), dtype=np.int64)], axis=1)
        logits, cache = self._step.forward(tokens.reshape(-1, 1).astype(np.int64), mask,
                                           positions, cache)
        return logits, cache, mask

    def __call__(self, batch: Batch) -> dict[str, np.ndarray]:
        """``{"logits": float32 [batch, vocab]}``: the last prompt position's logits."""
        logits, _, _ = self._prefill(batch, 0)
        return {"logits": self._step.numpy(logits)}

    def decode_logits(self, batch: TextBatch, tokens: np.ndarray) -> np.ndarray:
        """float32 ``[batch, steps, vocab]``: the logits after feeding each column of ``tokens``
        (int64 ``[batch, steps]``) through the cache, after the prompt (teacher forcing)."""
        import numpy as np

        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.ndim != 2 or tokens.shape[0] != batch.batch_size:
            raise BackendError(f"decode_logits(): tokens must be int64 [batch={batch.batch_size}, "
                               f"steps], got shape {list(tokens.shape)}")
        _, cache, mask = self._prefill(batch, tokens.shape[1])
        out = []
        for column in tokens.T:
            logits, cache, mask = self._advance(column, mask, cache)
            out.append(self._step.numpy(logits))
        if not out:
            return np.zeros((batch.batch_size, 0, 0), dtype=np.float32)
        return np.stack(out, axis=1)

    def generate(self, batch: TextBatch, new_tokens: int) -> GenerationRun:
        """Greedily decode exactly ``new_tokens`` tokens per prompt, timed per token from the
        call's start (tokenisation included): ``token_ns[0]`` is the time to first token."""
        import numpy as np

        if isinstance(new_tokens, bool) or not isinstance(new_tokens, int) or new_tokens < 1:
            raise BackendError(f"generate(): new_tokens must be an integer >= 1, got "
                               f"{new_tokens!r}")
        clock = time.perf_counter_ns
        start = clock()
        step = self._step
        logits, cache, mask = self._prefill(batch, new_tokens)
        token = step.argmax(logits)
        stamps = [clock() - start]
        tokens = [token]
        for _ in range(new_tokens - 1):
            logits, cache, mask = self._advance(token, mask, cache)
            token = step.argmax(logits)
            stamps.append(clock() - start)
            tokens.append(token)
        return GenerationRun(np.stack(tokens, axis=1).astype(np.int64), tuple(stamps))

    def close(self) -> None:
        self._step.close()


# -- eager builds -------------------------------------------------------------------------------

def _bnb_config(recipe: str) -> Any:
    """The deployment guide's bitsandbytes configurations."""
    import torch
    from transformers import BitsAndBytesConfig

    if recipe == "bnb-int8":
        return BitsAndBytesConfig(load_in_8bit=True,  # type: ignore[no-untyped-call]
                                  llm_int8_threshold=6.0)
    if recipe == "bnb-nf4":
        return BitsAndBytesConfig(  # type: ignore[no-untyped-call]
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
    raise AssertionError(recipe)


def conv1d_to_linear(model: Any) -> int:
    """Replace every transformers ``Conv1D`` (GPT-2's projections, weight ``[in, out]``) by the
    equivalent ``nn.Linear`` (weight ``[out, in]``), in place, so recipes that quantise
    ``nn.Linear`` reach them. Returns how many were replaced."""
    import torch
    from transformers.pytorch_utils import Conv1D

    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                linear = torch.nn.Linear(child.weight.shape[0], child.weight.shape[1],
                                         dtype=child.weight.dtype, device=child.weight.device)
                with torch.no_grad():
                    linear.weight.copy_(child.weight.t())
                    linear.bias.copy_(child.bias)
                setattr(parent, name, linear)
                replaced += 1
    return replaced


def quantised_layers(model: Any, recipe: str) -> tuple[int, int]:
    """``(quantised, float)`` counts of the model's projection layers under ``recipe``:
    bitsandbytes ``Linear8bitLt`` / ``Linear4bit`` modules, or ``nn.Linear`` whose weight is a
    torchao quantised tensor; ``float`` counts the ``nn.Linear`` / ``Conv1D`` left unquantised."""
    import torch
    from transformers.pytorch_utils import Conv1D

    kinds: tuple[type, ...] = ()
    if recipe.startswith("bnb-"):
        import bitsandbytes

        name = "Linear8bitLt" if recipe == "bnb-int8" else "Linear4bit"
        kinds = (getattr(bitsandbytes.nn, name),)
    quantised = plain = 0
    for module in model.modules():
        if kinds and isinstance(module, kinds):
            quantised += 1
        elif isinstance(module, (torch.nn.Linear, Conv1D)):
            weight = module.weight
            if not kinds and hasattr(weight, "__tensor_flatten__"):
                quantised += 1
            else:
                plain += 1
    return quantised, plain


def _load_quantised(model: ModelSpec, recipe: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    from pytest_pipeperf.backends import _quant

    if not recipe.startswith("bnb-"):  # this module's bitsandbytes configs differ from _quant's
        return _quant.load_quantised(AutoModelForCausalLM, model, recipe, prepare=conv1d_to_linear)
    _quant._require(recipe)
    try:
        config = _bnb_config(recipe)
        _quant._silence_bnb_cast_notice()
        net: Any = AutoModelForCausalLM.from_pretrained(
            str(model.path), dtype=torch.float32, local_files_only=True, device_map="cpu",
            quantization_config=config, trust_remote_code=model.trust_remote_code)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"pipeperf: backend 'eager' recipe {recipe!r} cannot import its package ({exc})"
        ) from exc
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot load a causal LM from {model.path}: {exc}") from exc
    return net.eval()


def _load_plain(auto: Any, model: ModelSpec, dtype: Any) -> Any:
    try:
        return auto.from_pretrained(str(model.path), dtype=dtype, local_files_only=True,
                                    trust_remote_code=model.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot load a causal LM from {model.path}: {exc}") from exc


def build_eager(model: ModelSpec, precision: Precision, device: Device,
                context: BuildContext) -> CausalLMRunnable:
    """The eager backend's ``text-generation`` build: ``AutoModelForCausalLM`` in fp32, bf16
    (fp16 on cuda), or int8 / int4 by the chosen recipe (CPU only), greedy with its KV cache.

    :raises BackendUnavailableError: torch / transformers / the recipe's package or the GPU is
        missing (the case skips).
    :raises BackendError: loading or quantising failed, or a quantised build has no quantised
        layer (its precision label would name what did not run).
    """
    from pytest_pipeperf.backends._hf import load_tokenizer
    from pytest_pipeperf.backends._quant import eager_recipe, module_bytes
    from pytest_pipeperf.backends._torch import import_transformers

    _check_task(model)
    transformers = import_transformers(context.threads)
    import torch

    if device.kind == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("pipeperf: device 'cuda' needs a CUDA build of torch "
                                      "and an NVIDIA GPU; torch sees none")
    recipe = eager_recipe(precision, device, context)
    start = time.perf_counter()
    if recipe is not None:
        net = _load_quantised(model, recipe)
        quantised, plain = quantised_layers(net, recipe)
        if quantised == 0:
            raise BackendError(f"recipe {recipe!r} left every projection layer of "
                               f"{model.path.name} unquantised ({plain} float layers); the case "
                               f"would not run {precision.value}")
    else:
        dtypes = {Precision.FP32: torch.float32, Precision.BF16: torch.bfloat16,
                  Precision.FP16: torch.float16}
        if precision not in dtypes:
            raise BackendError(f"backend 'eager' has no {precision.value} build for "
                               "text-generation")
        net = _load_plain(transformers.AutoModelForCausalLM, model, dtypes[precision])
        net = net.to(str(device))
    net = net.eval()
    tokenizer = load_tokenizer(model)
    info = BuildInfo(load_s=time.perf_counter() - start)
    info.notes["model_bytes"] = module_bytes(net)
    if recipe is not None:
        info.notes["recipe"] = recipe
        info.notes["quantized_layers"] = quantised
        info.notes["float_layers"] = plain
    return CausalLMRunnable(TorchStep(net, str(device)), tokenizer, info)


def _check_task(model: ModelSpec) -> None:
    if model.task is not Task.TEXT_GENERATION:
        raise BackendError(f"task {model.task.value!r} is not built by the causal-LM builder "
                           "(text-generation only)")


# -- onnxruntime builds -------------------------------------------------------------------------

def export_generation_onnx(model_dir: Path, cache_dir: Path, ort_backend: ModuleType,
                           trust_remote_code: bool = False) -> tuple[Path, float, str]:
    """optimum's ``text-generation-with-past`` export of ``model_dir``, once per content, in
    the ``onnxruntime`` backend's export cache (``cache_dir/onnx/<key>``: the model's content
    digest, the task and the exporter's versions, no opset field; sealed with the graph's
    SHA-256, so a stale or tampered entry is rebuilt, never used).

    :param ort_backend: the module :mod:`pytest_pipeperf.backends.onnxruntime` (its export
        cache and GPU session helpers), passed in: it imports this module to dispatch
        ``text-generation`` here, so importing it back would be an import cycle.
    :returns: ``(model.onnx path, export seconds, "hit" | "miss")``.
    :raises BackendUnavailableError: optimum's ONNX exporter cannot be imported.
    :raises BackendError: the export failed, with optimum's reason.
    """
    from pytest_pipeperf.backends._hf import model_digest

    key = ort_backend.task_export_key(model_digest(model_dir), EXPORT_TASK, opset=None)
    result: tuple[Path, float, str] = ort_backend.export_task_onnx(
        model_dir, EXPORT_TASK, key, cache_dir, trust_remote_code=trust_remote_code)
    return result


def ort_step(model_dir: Path, device: Device, cache_dir: Path, threads: int | None,
             ort_backend: ModuleType,
             trust_remote_code: bool = False) -> tuple[OrtStep, float, str, Path]:
    """An :class:`OrtStep` on ``device`` (CPU, or the CUDA execution provider) for the cached
    export of ``model_dir``.

    :param ort_backend: the module :mod:`pytest_pipeperf.backends.onnxruntime` (see
        :func:`export_generation_onnx`).

    :returns: ``(step, export seconds, export cache "hit" | "miss", graph path)``.
    :raises BackendUnavailableError: onnxruntime / optimum / onnxruntime-gpu is missing.
    :raises BackendError: the export or the session failed.
    """
    try:
        import onnxruntime as ort
    except (ImportError, OSError) as exc:
        raise BackendUnavailableError(
            f"pipeperf: backend 'onnxruntime' cannot import onnxruntime ({exc})") from exc
    onnx_path, export_s, hit = export_generation_onnx(model_dir, cache_dir, ort_backend,
                                                      trust_remote_code)
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if device.kind == "cuda":
        reason = ort_backend.gpu_package_reason("onnxruntime")
        if reason:
            raise BackendUnavailableError(reason)
        index = device.index or 0
        providers = [(ort_backend.CUDA_EP, ort_backend.cuda_ep_options(index, Precision.FP32))]
        session = ort_backend.create_gpu_session(ort, "onnxruntime", onnx_path, options,
                                                 providers, device)
        where = ("cuda", index)
    else:
        try:
            session = ort.InferenceSession(str(onnx_path), options,
                                           providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own RuntimeError subclasses
            raise BackendError(f"onnxruntime could not load {onnx_path}: {exc}") from exc
        where = ("cpu", 0)
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot read {model_dir / 'config.json'}: {exc}") from exc
    return OrtStep(session, where[0], where[1], config), export_s, hit, onnx_path


def build_onnxruntime(model: ModelSpec, precision: Precision, device: Device,
                      context: BuildContext, ort_backend: ModuleType) -> CausalLMRunnable:
    """The onnxruntime backend's ``text-generation`` build: fp32 only in this version (its
    int8 / int4 recipes quantise single-pass graphs; a with-past graph is not one of them).

    :param ort_backend: the module :mod:`pytest_pipeperf.backends.onnxruntime` (see
        :func:`export_generation_onnx`).

    :raises BackendUnavailableError: for another precision (the case skips, saying why), or a
        missing package.
    :raises BackendError: the export or the session failed.
    """
    from pytest_pipeperf.backends._hf import load_tokenizer
    from pytest_pipeperf.backends._ort_quant import onnx_bytes

    _check_task(model)
    if precision is not Precision.FP32:
        raise BackendUnavailableError(
            f"pipeperf: backend 'onnxruntime' runs text-generation in fp32 only in this version "
            f"(not {precision.value}: its quantisation recipes do not handle the KV-cache graph)")
    start = time.perf_counter()
    step, export_s, hit, onnx_path = ort_step(model.path, device, context.cache_dir,
                                              context.threads, ort_backend,
                                              model.trust_remote_code)
    tokenizer = load_tokenizer(model)
    info = BuildInfo(load_s=time.perf_counter() - start - export_s, export_s=export_s,
                     export_cache=hit)
    info.notes["onnx"] = str(onnx_path)
    info.notes["model_bytes"] = onnx_bytes(onnx_path)
    info.notes["providers"] = ",".join(step.providers)
    return CausalLMRunnable(step, tokenizer, info)
