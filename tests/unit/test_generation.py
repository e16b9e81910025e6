"""Greedy generation on a real tiny GPT-2 (built once into a temp dir): the KV-cache loop, the
timings, logits parity between eager and ONNX Runtime, and the argument errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_pipeperf.precision import DEFAULT_TOLERANCES, Precision
from pytest_pipeperf.scenarios.generation import (
    EagerGenerator,
    GenerationTiming,
    Generator,
    build_tiny_gpt2,
    export_generation_onnx,
    load_generator,
    logits_parity,
    measure_generation,
)

torch = pytest.importorskip("torch", exc_type=ImportError)
transformers = pytest.importorskip("transformers", exc_type=ImportError)
pytest.importorskip("tokenizers", exc_type=ImportError)

FP32 = DEFAULT_TOLERANCES[Precision.FP32]
# 24 ids drawn from the tokenizer's range (deterministic, not degenerate).
PROMPT = [(7 * i + 3) % 400 + 50 for i in range(24)]


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seeded tiny GPT-2, built once for this module."""
    return build_tiny_gpt2(tmp_path_factory.mktemp("models") / "gpt2")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export cache for the module (the ORT export runs once)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def eager(gpt2: Path, cache_dir: Path) -> Iterator[Generator]:
    gen = load_generator(gpt2, "eager", cache_dir=cache_dir, threads=1)
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def ort_gen(gpt2: Path, cache_dir: Path) -> Iterator[Generator]:
    pytest.importorskip("onnxruntime", exc_type=ImportError)
    pytest.importorskip("optimum.exporters.onnx", exc_type=ImportError)
    gen = load_generator(gpt2, "onnxruntime", cache_dir=cache_dir, threads=1)
    yield gen
    gen.close()


# -- the model ----------------------------------------------------------------------------------

def test_the_tiny_gpt2_tokenizer_emits_no_token_type_ids_and_fits_the_model(gpt2: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gpt2), local_files_only=True)
    encoded = tokenizer("model latency batch token")
    config = json.loads((gpt2 / "config.json").read_text())

    assert set(encoded) == {"input_ids", "attention_mask"}
    assert config["vocab_size"] == len(tokenizer)
    assert (config["n_layer"], config["n_embd"], config["n_head"], config["n_positions"]) == \
        (2, 128, 2, 256)
    assert tokenizer.eos_token_id == tokenizer.pad_token_id == config["eos_token_id"]
    assert max(PROMPT) < config["vocab_size"]


def test_building_into_an_existing_directory_is_refused(gpt2: Path) -> None:
    with pytest.raises(FileExistsError, match="already exists; delete it to rebuild"):
        build_tiny_gpt2(gpt2)


# -- the KV-cache loop --------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["eager", "ort_gen"])
def test_greedy_tokens_with_the_kv_cache_equal_recomputing_the_whole_sequence(
    which: str, request: pytest.FixtureRequest,
) -> None:
    gen: Generator = request.getfixturevalue(which)

    cached = gen.generate(PROMPT, 12).tokens

    assert cached == gen.generate_without_cache(PROMPT, 12)
    assert len(cached) == 12


def test_generate_returns_exactly_new_tokens_with_positive_timings(eager: Generator) -> None:
    timing = eager.generate(PROMPT, 6)

    assert len(timing.tokens) == 6
    assert len(timing.per_token_ns) == 5
    assert timing.ttft_ns > 0 and all(ns > 0 for ns in timing.per_token_ns)
    assert timing.total_ns == timing.ttft_ns + sum(timing.per_token_ns)
    assert eager.generate(PROMPT, 1).per_token_ns == ()


def test_measure_generation_summarises_every_repeat_and_decode_step(ort_gen: Generator) -> None:
    stats = measure_generation(ort_gen, PROMPT, 8, repeats=3, warmup=1)

    assert stats.ttft.n == 3
    assert stats.per_token is not None and stats.per_token.n == 3 * 7
    assert stats.tokens_per_s > 0 and stats.new_tokens == 8 and stats.prompt_tokens == 24
    assert stats.tokens == ort_gen.generate(PROMPT, 8).tokens
    metrics = stats.metrics()
    assert set(metrics) == {"ttft_p50_ms", "ttft_p99_ms", "per_token_p50_ms",
                            "per_token_p99_ms", "tokens_per_s", "prompt_tokens", "new_tokens"}
    assert 0 < metrics["ttft_p50_ms"] <= metrics["ttft_p99_ms"]  # type: ignore[operator]

    single = measure_generation(ort_gen, PROMPT, 1, repeats=2, warmup=0)
    assert single.per_token is None and single.metrics()["per_token_p50_ms"] is None


# -- parity -------------------------------------------------------------------------------------

def test_eager_and_onnxruntime_logits_agree_through_the_kv_cache(eager: Generator,
                                                                 ort_gen: Generator) -> None:
    parity = logits_parity(eager, ort_gen, PROMPT, FP32, steps=6)

    assert parity, parity.message()
    # measured here: max abs difference ~3e-7 (fp32 tolerance atol 1e-4)
    assert parity.value is not None and parity.value < 1e-5
    print(f"eager vs onnxruntime logits: {parity.summary()}")


def test_parity_detects_perturbed_weights(gpt2: Path, tmp_path: Path, cache_dir: Path,
                                          eager: Generator) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(gpt2), local_files_only=True)
    generator = torch.Generator().manual_seed(1)
    weight = model.transformer.h[1].mlp.c_fc.weight
    with torch.no_grad():  # noise: a constant shift would vanish after the zero-mean LayerNorm
        weight.add_(1e-2 * torch.randn(weight.shape, generator=generator))
    perturbed = tmp_path / "perturbed"
    model.save_pretrained(perturbed)
    AutoTokenizer.from_pretrained(str(gpt2), local_files_only=True).save_pretrained(perturbed)
    candidate = load_generator(perturbed, "eager", cache_dir=cache_dir, threads=1)

    parity = logits_parity(eager, candidate, PROMPT, FP32)

    assert not parity
    assert "would pass with atol>=" in parity.message()


class CacheDroppingGenerator(EagerGenerator):
    """A real model with a KV-cache bug: every decode step forgets the past tokens."""

    def _forward(self, ids: Sequence[int], cache: Any, past: int) -> tuple[Any, Any]:
        return super()._forward(ids, None, 0)


def test_parity_checks_the_decode_steps_not_only_the_prompt(gpt2: Path, eager: Generator) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(gpt2), local_files_only=True).eval()
    broken = CacheDroppingGenerator(model, "cpu")

    assert logits_parity(eager, broken, PROMPT, FP32, steps=0)  # the prompt alone agrees
    parity = logits_parity(eager, broken, PROMPT, FP32, steps=3)

    assert not parity
    assert "logits[step" in parity.detail


# -- errors and caching -------------------------------------------------------------------------

def test_an_unknown_backend_is_a_value_error_naming_the_valid_ones(gpt2: Path,
                                                                  tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"backend='tensorrt'.*valid: eager, onnxruntime"):
        load_generator(gpt2, "tensorrt", cache_dir=tmp_path)


def test_a_missing_model_directory_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"model_dir=.*no config.json"):
        load_generator(tmp_path / "nowhere", "eager", cache_dir=tmp_path)


@pytest.mark.parametrize("new_tokens", [0, -1, 1.5, True])
def test_new_tokens_below_one_is_a_value_error(eager: Generator, new_tokens: Any) -> None:
    with pytest.raises(ValueError, match=r"new_tokens must be an integer >= 1"):
        eager.generate(PROMPT, new_tokens)
    with pytest.raises(ValueError, match=r"new_tokens must be an integer >= 1"):
        measure_generation(eager, PROMPT, new_tokens, repeats=1)


def test_an_empty_prompt_is_a_value_error(eager: Generator) -> None:
    np = pytest.importorskip("numpy")
    with pytest.raises(ValueError, match=r"prompt_ids is empty"):
        eager.generate([], 4)
    with pytest.raises(ValueError, match=r"prompt_ids is empty"):
        eager.prefill_logits(np.zeros(0, dtype=np.int64))
    with pytest.raises(ValueError, match=r"prompt_ids must be one sequence"):
        eager.generate(np.zeros((1, 4), dtype=np.int64), 4)


def test_bad_repeats_and_overlong_sequences_are_value_errors(eager: Generator) -> None:
    with pytest.raises(ValueError, match=r"repeats must be an integer >= 1, got 0"):
        measure_generation(eager, PROMPT, 4, repeats=0)
    with pytest.raises(ValueError, match=r"warmup must be an integer >= 0"):
        measure_generation(eager, PROMPT, 4, repeats=1, warmup=-1)
    with pytest.raises(ValueError, match=r"exceed the model's 256 positions"):
        eager.generate(PROMPT, 256)


def test_a_timing_must_have_one_latency_per_further_token() -> None:
    with pytest.raises(ValueError, match="want len\\(tokens\\) - 1"):
        GenerationTiming(10, (1, 2), (5, 6))
    with pytest.raises(ValueError, match="tokens must not be empty"):
        GenerationTiming(10, (), ())


def test_the_export_is_cached_by_model_content(gpt2: Path, cache_dir: Path,
                                               ort_gen: Generator) -> None:
    path, seconds, cache = export_generation_onnx(gpt2, cache_dir)

    assert cache == "hit" and seconds == 0.0 and path.is_file()
    assert path.parent.parent == cache_dir / "onnx"


def test_importing_the_module_imports_no_heavy_library() -> None:
    code = ("import sys, pytest_pipeperf.scenarios.generation\n"
            "heavy = {'torch', 'onnxruntime', 'optimum', 'transformers', 'tokenizers'}\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_build_is_deterministic(gpt2: Path, tmp_path: Path) -> None:
    from pytest_pipeperf.backends._hf import model_digest

    again = build_tiny_gpt2(tmp_path / "again")

    assert model_digest(again) == model_digest(gpt2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]  # no temporary left behind
