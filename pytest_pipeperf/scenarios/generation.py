"""Greedy text generation with a KV cache: time to first token, per-token latency, tokens/s.

A :class:`Generator` runs one causal language model on one backend (``eager``: PyTorch via
transformers; ``onnxruntime``: optimum's ``text-generation-with-past`` export, cached on disk by
the ``onnxruntime`` backend's export cache) and decodes greedily, one sequence at a time, feeding
the key/value cache back at every step.

* :meth:`Generator.generate` times a run with ``time.perf_counter_ns``: the time to first token
  (TTFT: the prompt's forward pass plus picking the first token) and then the latency of every
  further token (one cached forward pass of the previous token plus picking the next one). It
  always produces exactly ``new_tokens`` tokens (end-of-sequence is ignored), so runs compare.
* :func:`measure_generation` repeats it and summarises (:class:`GenerationStats`).
* :func:`logits_parity` compares a candidate with the eager fp32 reference on *logits*: of the
  prompt, and after a few cached decode steps fed the reference's own greedy tokens (teacher
  forcing). Comparing generated text would be fragile: a random-weight model has near-tied
  logits, so the tiniest rounding difference may flip an argmax and diverge the two texts.
* :func:`build_tiny_gpt2` saves a seeded random 2-layer GPT-2 with a byte-level BPE tokenizer
  trained in process: a generation model that needs no download.

torch, transformers, optimum and onnxruntime are imported inside the functions that need them.
"""

from __future__ import annotations

import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_pipeperf.backends.base import BackendError, BackendUnavailableError
from pytest_pipeperf.stats import LatencyStats, summarize

if TYPE_CHECKING:
    import numpy as np

    from pytest_pipeperf.backends._generate import CausalStep

    from pytest_pipeperf.devices import Device
    from pytest_pipeperf.parity import ParityResult
    from pytest_pipeperf.precision import ParityPreset

GENERATION_BACKENDS = ("eager", "onnxruntime")
EXPORT_TASK = "text-generation-with-past"  # = backends._generate.EXPORT_TASK

GPT2_CONFIG = {"n_layer": 2, "n_embd": 128, "n_head": 2, "n_positions": 256}
TOKENIZER_VOCAB = 512
EOS_TOKEN = "<|endoftext|>"
# The tokenizer's training corpus is drawn from these words (the same as pipeperf.inputs.texts),
# so prompts made by pipeperf.inputs.texts() tokenise into whole-word tokens.
_CORPUS_SENTENCES = 400
_CORPUS_WORDS = 24


# -- a local model ------------------------------------------------------------------------------

def _corpus(seed: int) -> list[str]:
    from pytest_pipeperf.inputs import WORDS as _WORDS

    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(_CORPUS_WORDS))
            for _ in range(_CORPUS_SENTENCES)]


def save_model_dir(model: Any, tokenizer: Any, target: Path) -> Path:
    """``save_pretrained`` ``model`` and ``tokenizer`` into a fresh directory next to ``target``,
    then rename it to ``target`` in one step, so that a reader never sees a half-written model.

    :param model: a transformers model.
    :param tokenizer: its tokenizer.
    :param target: the model directory to create; losing the rename to a concurrent build of the
        same model (another xdist worker) is not an error once that build has finished.
    :returns: ``target``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # a concurrent build (another xdist worker) won: fine if it finished
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_tiny_gpt2(target: Path, seed: int = 0) -> Path:
    """Save a seeded random-weight 2-layer GPT-2 and its tokenizer into ``target``.

    The model is ``GPT2LMHeadModel`` (2 layers, hidden 128, 2 heads, 256 positions) with weights
    drawn after ``torch.manual_seed(seed)``; the tokenizer is a byte-level BPE trained by
    ``tokenizers`` on a deterministic word corpus (about 500 tokens, ``<|endoftext|>`` as end,
    padding and unknown token), wrapped in ``PreTrainedTokenizerFast`` with the model inputs
    ``input_ids`` and ``attention_mask`` only: a tokenizer that also emits ``token_type_ids``
    makes PyTorch's GPT-2 add a token-type embedding that the ONNX export lacks. Nothing is
    downloaded. Written into a temporary sibling directory and renamed, so an interrupted build
    leaves nothing half-made.

    :param target: the model directory to create; must not exist yet.
    :param seed: the weight and corpus seed: same seed, same files.
    :returns: ``target``.
    :raises FileExistsError: if ``target`` exists (delete it to rebuild); losing the final
        rename to a concurrent build of the same model is not an error.
    """
    if target.exists():
        raise FileExistsError(f"build_tiny_gpt2(): {target} already exists; delete it to rebuild")
    import torch
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB, special_tokens=[EOS_TOKEN], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(_corpus(seed), trainer)
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=bpe, eos_token=EOS_TOKEN, bos_token=EOS_TOKEN, unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN, model_input_names=["input_ids", "attention_mask"])
    eos = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    config = GPT2Config(  # type: ignore[no-untyped-call]
        vocab_size=len(tokenizer), bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
        **GPT2_CONFIG)
    torch.manual_seed(seed)
    model: Any = GPT2LMHeadModel(config)  # type: ignore[no-untyped-call]
    model.eval()
    return save_model_dir(model, tokenizer, target)


# -- results ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class GenerationTiming:
    """One timed greedy generation.

    :param ttft_ns: time to first token: the prompt's forward pass plus picking the first token.
    :param per_token_ns: the latency of each further token (``len(tokens) - 1`` values).
    :param tokens: the generated token ids (prompt excluded).
    """

    ttft_ns: int
    per_token_ns: tuple[int, ...]
    tokens: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.tokens:
            raise ValueError("GenerationTiming: tokens must not be empty")
        if len(self.per_token_ns) != len(self.tokens) - 1:
            raise ValueError(f"GenerationTiming: per_token_ns has {len(self.per_token_ns)} "
                             f"values for {len(self.tokens)} tokens; want len(tokens) - 1")
        if self.ttft_ns < 0 or any(ns < 0 for ns in self.per_token_ns):
            raise ValueError("GenerationTiming: durations must be >= 0")

    @property
    def total_ns(self) -> int:
        """The whole generation: TTFT plus every further token."""
        return self.ttft_ns + sum(self.per_token_ns)


@dataclass(frozen=True, slots=True)
class GenerationStats:
    """Summary of repeated generations (:func:`measure_generation`).

    :param ttft: time-to-first-token statistics, one sample per repeat.
    :param per_token: per-token latency statistics over every decode step of every repeat;
        ``None`` when ``new_tokens`` is 1 (no decode step).
    :param tokens_per_s: ``new_tokens`` / whole generation time, median over the repeats.
    :param tokens: the token ids the first timed repeat generated.
    :param prompt_tokens: the prompt's length.
    :param repeats: how many timed generations.
    """

    ttft: LatencyStats
    per_token: LatencyStats | None
    tokens_per_s: float
    tokens: tuple[int, ...]
    prompt_tokens: int
    repeats: int

    @property
    def new_tokens(self) -> int:
        """Tokens generated per repeat."""
        return len(self.tokens)

    def metrics(self) -> dict[str, float | int | None]:
        """The scenario row: ``ttft_p50_ms``, ``ttft_p99_ms``, ``per_token_p50_ms``,
        ``per_token_p99_ms``, ``tokens_per_s``, ``prompt_tokens``, ``new_tokens``."""
        per = self.per_token
        return {"ttft_p50_ms": self.ttft.p50_ms, "ttft_p99_ms": self.ttft.p99_ms,
                "per_token_p50_ms": per.p50_ms if per else None,
                "per_token_p99_ms": per.p99_ms if per else None,
                "tokens_per_s": self.tokens_per_s, "prompt_tokens": self.prompt_tokens,
                "new_tokens": self.new_tokens}


# -- argument checks ----------------------------------------------------------------------------

def _prompt(prompt_ids: Sequence[int] | np.ndarray, where: str) -> tuple[int, ...]:
    shape = getattr(prompt_ids, "shape", None)
    if shape is not None and len(shape) != 1:
        raise ValueError(f"{where}: prompt_ids must be one sequence of token ids (1-D), got "
                         f"shape {tuple(shape)}; pass e.g. ids[0] for a batch of one")
    ids = tuple(int(i) for i in prompt_ids)
    if not ids:
        raise ValueError(f"{where}: prompt_ids is empty; pass at least one token id, e.g. "
                         "tokenizer(text)['input_ids']")
    return ids


def _count(value: object, name: str, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{where}: {name} must be an integer >= {minimum}, got {value!r}")
    return value


# -- generators ---------------------------------------------------------------------------------

class Generator:
    """Greedy decoding of one sequence with a KV cache on one backend (from
    :func:`load_generator`).

    Subclasses implement :meth:`_forward` (new token ids plus the cache -> the last position's
    logits in the backend's own form, and the grown cache), :meth:`_argmax` and :meth:`_numpy`;
    :meth:`_sync` waits for the device before the clock is read.

    :param backend: the backend's name.
    :param max_positions: the model's context length (prompt plus generated tokens).
    """

    def __init__(self, backend: str, max_positions: int | None) -> None:
        self.backend = backend
        self.max_positions = max_positions

    def _forward(self, ids: Sequence[int], cache: Any, past: int) -> tuple[Any, Any]:
        raise NotImplementedError

    def _argmax(self, logits: Any) -> int:
        raise NotImplementedError

    def _numpy(self, logits: Any) -> np.ndarray:
        raise NotImplementedError

    def _sync(self) -> None:
        """Wait until the device finished the queued work (no-op on the CPU)."""

    def close(self) -> None:
        """Release the model or session; the generator cannot run afterwards."""

    def _check_length(self, prompt: int, new_tokens: int, where: str) -> None:
        if self.max_positions is not None and prompt + new_tokens > self.max_positions:
            raise ValueError(f"{where}: {prompt} prompt tokens + new_tokens={new_tokens} exceed "
                             f"the model's {self.max_positions} positions; shorten the prompt "
                             "or generate fewer tokens")

    def prefill_logits(self, prompt_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The logits of the prompt's last position (float32, ``[vocab]``), for parity.

        :param prompt_ids: the prompt's token ids (one sequence).
        :raises ValueError: for an empty prompt or one longer than the model's context.
        """
        prompt = _prompt(prompt_ids, f"{self.backend}.prefill_logits()")
        self._check_length(len(prompt), 0, f"{self.backend}.prefill_logits()")
        logits, _ = self._forward(prompt, None, 0)
        return self._numpy(logits)

    def stepwise_logits(self, prompt_ids: Sequence[int] | np.ndarray,
                        forced: Sequence[int]) -> list[np.ndarray]:
        """Logits after the prompt and after each token of ``forced``, fed through the KV cache
        one at a time whatever this model would have picked (teacher forcing).

        :param prompt_ids: the prompt's token ids (one sequence).
        :param forced: the tokens to feed after the prompt.
        :returns: ``len(forced) + 1`` float32 arrays ``[vocab]``.
        :raises ValueError: for an empty prompt or a sequence longer than the model's context.
        """
        where = f"{self.backend}.stepwise_logits()"
        prompt = _prompt(prompt_ids, where)
        self._check_length(len(prompt), len(forced), where)
        logits, cache = self._forward(prompt, None, 0)
        out = [self._numpy(logits)]
        past = len(prompt)
        for token in forced:
            logits, cache = self._forward((int(token),), cache, past)
            past += 1
            out.append(self._numpy(logits))
        return out

    def generate(self, prompt_ids: Sequence[int] | np.ndarray, new_tokens: int) -> GenerationTiming:
        """Greedily generate exactly ``new_tokens`` tokens with the KV cache, timed.

        TTFT runs from before the prompt's forward pass to after the first token is known; each
        further token's latency covers one cached forward pass of the previous token and the
        choice of the next. End-of-sequence tokens do not stop the run.

        :param prompt_ids: the prompt's token ids (one sequence).
        :param new_tokens: how many tokens to generate (>= 1).
        :raises ValueError: for an empty prompt, ``new_tokens < 1`` or a sequence longer than
            the model's context.
        """
        where = f"{self.backend}.generate()"
        prompt = _prompt(prompt_ids, where)
        _count(new_tokens, "new_tokens", where, 1)
        self._check_length(len(prompt), new_tokens, where)
        clock = time.perf_counter_ns
        self._sync()
        start = clock()
        logits, cache = self._forward(prompt, None, 0)
        token = self._argmax(logits)
        self._sync()
        now = clock()
        ttft = now - start
        tokens = [token]
        per_token: list[int] = []
        past = len(prompt)
        for _ in range(new_tokens - 1):
            start = now
            logits, cache = self._forward((token,), cache, past)
            token = self._argmax(logits)
            self._sync()
            now = clock()
            per_token.append(now - start)
            tokens.append(token)
            past += 1
        return GenerationTiming(ttft, tuple(per_token), tuple(tokens))

    def generate_without_cache(self, prompt_ids: Sequence[int] | np.ndarray,
                               new_tokens: int) -> tuple[int, ...]:
        """Greedy tokens computed the slow way: the whole sequence re-run at every step, no
        KV cache. A check of :meth:`generate`'s cache handling, not a benchmark.

        :param prompt_ids: the prompt's token ids (one sequence).
        :param new_tokens: how many tokens to generate (>= 1).
        """
        where = f"{self.backend}.generate_without_cache()"
        sequence = list(_prompt(prompt_ids, where))
        _count(new_tokens, "new_tokens", where, 1)
        self._check_length(len(sequence), new_tokens, where)
        tokens: list[int] = []
        for _ in range(new_tokens):
            logits, _ = self._forward(sequence, None, 0)
            token = self._argmax(logits)
            tokens.append(token)
            sequence.append(token)
        return tuple(tokens)


class StepGenerator(Generator):
    """A :class:`Generator` over one of the backends' cached forward passes
    (:class:`~pytest_pipeperf.backends._generate.CausalStep`), run with a batch of one.

    :param backend: the backend's name.
    :param step: the model's cached forward pass.
    :param device: where a device wait is needed (``cuda:N``), else ``None``.
    """

    def __init__(self, backend: str, step: CausalStep, device: str | None = None) -> None:
        import numpy as np

        super().__init__(backend, step.max_positions)
        self._np = np
        self._step: CausalStep | None = step
        self._cuda = device if device is not None and device.startswith("cuda") else None

    def _forward(self, ids: Sequence[int], cache: Any, past: int) -> tuple[Any, Any]:
        np = self._np
        if self._step is None:
            raise BackendError(f"{self.backend} generator is closed")
        n = len(ids)
        logits, cache = self._step.forward(
            np.asarray([list(ids)], dtype=np.int64), np.ones((1, past + n), dtype=np.int64),
            np.arange(past, past + n, dtype=np.int64)[None, :], cache)
        return logits, cache

    def _argmax(self, logits: Any) -> int:
        assert self._step is not None
        return int(self._step.argmax(logits)[0])

    def _numpy(self, logits: Any) -> np.ndarray:
        assert self._step is not None
        result: np.ndarray = self._step.numpy(logits)[0]
        return result

    def _sync(self) -> None:
        if self._cuda is not None:
            import torch

            torch.cuda.synchronize(self._cuda)

    def close(self) -> None:
        if self._step is not None:
            self._step.close()
        self._step = None


class EagerGenerator(StepGenerator):
    """A transformers causal LM in fp32, in inference mode, with its ``DynamicCache``.

    :param model: the loaded ``AutoModelForCausalLM`` (already on ``device``, in eval mode).
    :param device: the torch device string (``cpu``, ``cuda:0``).
    """

    def __init__(self, model: Any, device: str) -> None:
        from pytest_pipeperf.backends._generate import TorchStep

        super().__init__("eager", TorchStep(model, device), device)


class OnnxRuntimeGenerator(StepGenerator):
    """An ONNX Runtime session of optimum's ``text-generation-with-past`` export
    (:class:`~pytest_pipeperf.backends._generate.OrtStep`: the cache stays in ONNX Runtime).

    :param step: the session's cached forward pass.
    """

    def __init__(self, step: CausalStep) -> None:
        super().__init__("onnxruntime", step)


# -- loading ------------------------------------------------------------------------------------

def export_generation_onnx(model_dir: Path, cache_dir: Path) -> tuple[Path, float, str]:
    """Export ``model_dir`` for ``text-generation-with-past`` with optimum, once per content:
    :func:`pytest_pipeperf.backends._generate.export_generation_onnx` (the ``onnxruntime``
    backend's export cache, ``cache_dir/onnx/<key>``, sealed with the graph's SHA-256).

    :returns: ``(model.onnx path, export seconds, "hit" | "miss")``.
    :raises BackendUnavailableError: optimum's ONNX exporter cannot be imported.
    :raises BackendError: the export failed, with optimum's reason.
    """
    from pytest_pipeperf.backends import _generate, onnxruntime

    return _generate.export_generation_onnx(model_dir, cache_dir, onnxruntime)


def _load_eager(model_dir: Path, device: Device, threads: int | None) -> EagerGenerator:
    try:
        import torch
        from transformers import AutoModelForCausalLM
    except (ImportError, OSError) as exc:
        raise BackendUnavailableError(
            f"pipeperf: backend 'eager' cannot import torch/transformers ({exc})") from exc
    from pytest_pipeperf.backends._hf import set_torch_threads

    set_torch_threads(threads)
    if device.kind == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(f"pipeperf: backend 'eager' on {device} needs a CUDA "
                                      "build of torch and a GPU; torch sees none")
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True,
                                                     dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot load a causal LM from {model_dir}: {exc}") from exc
    return EagerGenerator(model.to(str(device)).eval(), str(device))


def _load_onnxruntime(model_dir: Path, device: Device, cache_dir: Path,
                      threads: int | None) -> OnnxRuntimeGenerator:
    from pytest_pipeperf.backends import onnxruntime
    from pytest_pipeperf.backends._generate import ort_step

    step, _, _, _ = ort_step(model_dir, device, cache_dir, threads, onnxruntime)
    return OnnxRuntimeGenerator(step)


def load_generator(model_dir: str | Path, backend: str, *, cache_dir: Path,
                   threads: int | None = None, device: str | Device = "cpu") -> Generator:
    """Load a causal LM for greedy generation on ``backend`` in fp32.

    :param model_dir: a local causal LM directory (``save_pretrained`` layout); nothing
        downloads.
    :param backend: ``eager`` (``AutoModelForCausalLM``, fp32, eval, inference mode) or
        ``onnxruntime`` (optimum's ``text-generation-with-past`` export, cached in ``cache_dir``
        by the model's content digest, run with its KV cache bound in ONNX Runtime).
    :param cache_dir: the directory for exports that survive between runs.
    :param threads: intra-op threads (torch process-wide, or the ORT session); ``None`` leaves
        the library default.
    :param device: ``cpu``, ``cuda`` or ``cuda:N`` (onnxruntime on cuda needs
        ``onnxruntime-gpu``).
    :raises ValueError: for an unknown backend, a bad device or a missing model directory.
    :raises BackendUnavailableError: a needed package or the GPU is absent (skip the case).
    :raises BackendError: loading or exporting failed, with the library's reason.
    """
    from pytest_pipeperf.devices import Device, parse_device

    if backend not in GENERATION_BACKENDS:
        raise ValueError(f"load_generator(backend={backend!r}): unknown generation backend; "
                         f"valid: {', '.join(GENERATION_BACKENDS)}")
    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise ValueError(f"load_generator(model_dir={str(model_dir)!r}): no config.json there; "
                         "pass a local directory saved with save_pretrained() (models are never "
                         "downloaded), e.g. one made by build_tiny_gpt2()")
    where = device if isinstance(device, Device) else parse_device(device)
    if backend == "eager":
        return _load_eager(path, where, threads)
    return _load_onnxruntime(path, where, Path(cache_dir), threads)


# -- measuring and parity -----------------------------------------------------------------------

def measure_generation(gen: Generator, prompt_ids: Sequence[int] | np.ndarray, new_tokens: int,
                       repeats: int, warmup: int = 1) -> GenerationStats:
    """Time ``repeats`` greedy generations after ``warmup`` untimed ones.

    :param gen: from :func:`load_generator`.
    :param prompt_ids: the prompt's token ids (one sequence).
    :param new_tokens: tokens per generation (>= 1).
    :param repeats: timed generations (>= 1).
    :param warmup: untimed generations first (>= 0).
    :raises ValueError: for an empty prompt or a count out of range, naming it.
    """
    where = "measure_generation()"
    prompt = _prompt(prompt_ids, where)
    _count(new_tokens, "new_tokens", where, 1)
    _count(repeats, "repeats", where, 1)
    _count(warmup, "warmup", where, 0)
    for _ in range(warmup):
        gen.generate(prompt, new_tokens)
    runs = [gen.generate(prompt, new_tokens) for _ in range(repeats)]
    decode = [ns for run in runs for ns in run.per_token_ns]
    rates = [new_tokens / (run.total_ns / 1e9) if run.total_ns > 0 else 0.0 for run in runs]
    return GenerationStats(
        ttft=summarize([run.ttft_ns for run in runs]),
        per_token=summarize(decode) if decode else None,
        tokens_per_s=float(statistics.median(rates)),
        tokens=runs[0].tokens, prompt_tokens=len(prompt), repeats=repeats)


def logits_parity(reference_gen: Generator, candidate_gen: Generator,
                  prompt_ids: Sequence[int] | np.ndarray, preset: ParityPreset,
                  steps: int = 4) -> ParityResult:
    """Compare the candidate's logits with the reference's, through the KV cache.

    The reference greedily picks ``steps`` tokens; both generators then get the prompt and those
    same tokens one at a time (teacher forcing), and the logits of the prompt's last position
    and of each decode step are compared with :func:`~pytest_pipeperf.parity.compare_outputs`
    (outputs ``logits[prefill]``, ``logits[step 1]``, ...). Feeding the same tokens keeps a
    near-tie that flips an argmax from diverging the two paths, and the decode steps check that
    the candidate's cache really matches.

    :param reference_gen: the eager fp32 generator.
    :param candidate_gen: the generator under test.
    :param prompt_ids: the prompt's token ids (one sequence).
    :param preset: the tolerance, e.g. ``pipeperf.marker.parity_preset(pipeperf.precision)``.
    :param steps: decode steps checked after the prompt (>= 0).
    :raises ValueError: for an empty prompt or ``steps < 0``.
    """
    from pytest_pipeperf.parity import compare_outputs

    prompt = _prompt(prompt_ids, "logits_parity()")
    _count(steps, "steps", "logits_parity()", 0)
    forced = reference_gen.generate(prompt, steps).tokens if steps else ()
    names = ["logits[prefill]", *(f"logits[step {i}]" for i in range(1, steps + 1))]
    reference = dict(zip(names, reference_gen.stepwise_logits(prompt, forced)))
    candidate = dict(zip(names, candidate_gen.stepwise_logits(prompt, forced)))
    return compare_outputs(reference, candidate, preset)
