"""Deterministic synthetic inputs (``pipeperf.inputs``) and the input containers ``bench()`` takes."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, overload

from pytest_pipeperf.backends.base import Batch, ImageBatch, TextBatch

if TYPE_CHECKING:
    import numpy as np

# The vocabulary of pipeperf.inputs.texts() (and of the generation scenario's prompts).
WORDS = ["model", "latency", "batch", "token", "fast", "slow", "graph", "kernel", "tensor", "export", "runtime", "cache", "memory", "engine", "quantise", "parity", "baseline", "regression", "throughput", "pipeline", "embed", "sentence", "review", "commit", "build", "the", "a", "of", "and", "to", "in", "is", "for", "on", "with", "as", "by", "at", "from", "this", "that", "it", "be", "are", "was", "were", "has", "have", "will", "can", "may", "should", "data", "result", "value", "shape", "layer", "head", "attention", "vector", "score", "label", "text", "input"]



class TextInputs(tuple[str, ...]):
    """Texts plus the sequence length every batch is padded/truncated to."""

    max_length: int | None

    def __new__(cls, texts: Sequence[str], max_length: int | None = None) -> TextInputs:
        obj = super().__new__(cls, texts)
        obj.max_length = max_length
        return obj


class QuestionInputs(tuple[tuple[str, str], ...]):
    """``(question, context)`` pairs for question-answering, plus the sequence length every batch
    is padded/truncated to (the context is truncated, never the question)."""

    max_length: int | None

    def __new__(cls, pairs: Sequence[tuple[str, str]],
                max_length: int | None = None) -> QuestionInputs:
        obj = super().__new__(cls, pairs)
        obj.max_length = max_length
        return obj


class ImageInputs(Sequence["np.ndarray"]):
    """Images for an image model: one float32 array ``[n, C, H, W]`` of normalised pixels.

    A sequence of ``n`` images: ``inputs[i]`` is image ``i`` (``[C, H, W]``) and ``inputs[:b]``
    the first ``b`` (an ``ImageInputs`` viewing the same memory), so ``pipeperf.bench()`` runs
    batch ``b`` on ``inputs[:b]`` as it does with texts.

    :param pixel_values: a C-contiguous numpy float32 array ``[n >= 1, C, H, W]``, already
        preprocessed for the model; kept, not copied.
    :raises ValueError: for anything else.
    """

    def __init__(self, pixel_values: np.ndarray) -> None:
        ImageBatch(pixel_values)  # validates
        self.pixel_values = pixel_values

    def __len__(self) -> int:
        return int(self.pixel_values.shape[0])

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> ImageInputs: ...

    def __getitem__(self, index: int | slice) -> np.ndarray | ImageInputs:
        if isinstance(index, slice):
            import numpy as np

            return ImageInputs(np.ascontiguousarray(self.pixel_values[index]))
        image: np.ndarray = self.pixel_values[index]
        return image

    def __repr__(self) -> str:
        return f"ImageInputs({'x'.join(str(d) for d in self.pixel_values.shape)} float32)"

    def batch(self, size: int) -> ImageBatch:
        """The first ``size`` images as one :class:`~pytest_pipeperf.backends.base.ImageBatch`."""
        return ImageBatch(self.pixel_values[:size])


def batch_of(inputs: tuple[str, ...] | ImageInputs, size: int, max_length: int | None) -> Batch:
    """``bench()``'s batch of ``size``: the first ``size`` texts or images of ``inputs`` (or,
    for a user's module or ``.onnx`` file, the first ``size`` rows of each of its tensors: a
    :class:`~pytest_pipeperf.backends.base.TensorBatch`)."""
    from pytest_pipeperf.backends._user import is_tensor_inputs, tensor_batch

    if is_tensor_inputs(inputs):
        return tensor_batch(inputs, size)
    if isinstance(inputs, ImageInputs):
        return inputs.batch(size)
    return TextBatch(inputs[:size], max_length)


class InputFactory:
    """Deterministic synthetic inputs (``pipeperf.inputs``)."""

    def texts(self, n: int = 64, seq_len: int = 128, seed: int = 0) -> TextInputs:
        """``n`` pseudo-random English-ish texts, padded/truncated to ``seq_len`` tokens.

        :param n: how many texts (>= 1); must cover the largest batch size.
        :param seq_len: tokens per sequence after tokenisation (>= 2, special tokens included).
        :param seed: the generator seed: same seed, same texts.
        :raises ValueError: for ``n < 1`` or ``seq_len < 2``.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"pipeperf.inputs.texts(n={n!r}): n must be an integer >= 1")
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 2:
            raise ValueError(f"pipeperf.inputs.texts(seq_len={seq_len!r}): seq_len must be an "
                             "integer >= 2")
        rng = random.Random(seed)
        texts = [" ".join(rng.choice(WORDS) for _ in range(seq_len)) for _ in range(n)]
        return TextInputs(texts, seq_len)

    def questions(self, n: int = 64, seq_len: int = 128, seed: int = 0) -> QuestionInputs:
        """``n`` pseudo-random ``(question, context)`` pairs for question-answering, padded and
        truncated together to ``seq_len`` tokens (only the context is truncated).

        Each question has ``max(1, min(8, seq_len // 4))`` words and ends in ``?``; each context
        has ``seq_len`` words, so it fills the sequence. Same seed, same pairs.

        :param n: how many pairs (>= 1); must cover the largest batch size.
        :param seq_len: tokens per pair after tokenisation (>= 8, special tokens included).
        :param seed: the generator seed.
        :raises ValueError: for ``n < 1`` or ``seq_len < 8``.
        """
        _check_count("questions", n)
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 8:
            raise ValueError(f"pipeperf.inputs.questions(seq_len={seq_len!r}): seq_len must be "
                             "an integer >= 8 (room for a question and some context)")
        rng = random.Random(seed)
        words = max(1, min(8, seq_len // 4))
        pairs = [(" ".join(rng.choice(WORDS) for _ in range(words)) + "?",
                  " ".join(rng.choice(WORDS) for _ in range(seq_len))) for _ in range(n)]
        return QuestionInputs(pairs, seq_len)

    def masked(self, n: int = 64, seq_len: int = 128, seed: int = 0,
               mask_token: str = "[MASK]") -> TextInputs:
        """``n`` texts as :meth:`texts` makes them, each with one word replaced by
        ``mask_token``, for fill-mask.

        The mask sits in the first half of the text, so truncation to ``seq_len`` tokens keeps
        it. Same seed, same texts.

        :param n: how many texts (>= 1); must cover the largest batch size.
        :param seq_len: tokens per sequence after tokenisation (>= 4, special tokens included).
        :param seed: the generator seed.
        :param mask_token: the model tokenizer's mask token: ``[MASK]`` for BERT-style
            tokenizers, ``<mask>`` for RoBERTa-style ones (``tokenizer.mask_token``).
        :raises ValueError: for ``n < 1``, ``seq_len < 4`` or an empty ``mask_token``.
        """
        _check_count("masked", n)
        if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 4:
            raise ValueError(f"pipeperf.inputs.masked(seq_len={seq_len!r}): seq_len must be an "
                             "integer >= 4")
        if not isinstance(mask_token, str) or not mask_token.strip():
            raise ValueError(f"pipeperf.inputs.masked(mask_token={mask_token!r}): the "
                             "tokenizer's mask token, e.g. '[MASK]' or '<mask>'")
        rng = random.Random(seed)
        texts = []
        for _ in range(n):
            words = [rng.choice(WORDS) for _ in range(seq_len)]
            words[rng.randrange(max(1, (seq_len - 2) // 2))] = mask_token
            texts.append(" ".join(words))
        return TextInputs(texts, seq_len)

    def images(self, n: int = 64, size: int = 224, seed: int = 0) -> ImageInputs:
        """``n`` pseudo-random RGB images of ``size`` x ``size`` pixels, already normalised.

        Pixels are uniform in [0, 1) and normalised with mean 0.5 and std 0.5 per channel (the
        ``ViTImageProcessor`` defaults), so values lie in [-1, 1). Images are drawn in order, so
        ``images(n=8)[:2]`` equals ``images(n=2)``.

        :param n: how many images (>= 1); must cover the largest batch size.
        :param size: height and width in pixels (>= 8); must match the model's ``image_size``.
        :param seed: the generator seed: same seed, same images.
        :raises ValueError: for ``n < 1`` or ``size < 8``.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"pipeperf.inputs.images(n={n!r}): n must be an integer >= 1")
        if isinstance(size, bool) or not isinstance(size, int) or size < 8:
            raise ValueError(f"pipeperf.inputs.images(size={size!r}): size must be an integer "
                             ">= 8")
        import numpy as np

        pixels = np.random.default_rng(seed).random((n, 3, size, size), dtype=np.float32)
        return ImageInputs((pixels - np.float32(0.5)) / np.float32(0.5))


def _check_count(factory: str, n: object) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"pipeperf.inputs.{factory}(n={n!r}): n must be an integer >= 1")
