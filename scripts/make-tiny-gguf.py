#!/usr/bin/env python3
"""Makes a tiny random Llama-architecture GGUF model and its tokenizer.json, for testing against
a real llama-server on a CPU with no model download.

The tokenizer is a byte-level BPE trained here on a synthetic lowercase corpus (4096 entries,
ChatML special tokens and chat template), so that many words are single tokens: the replay builds
exact-length chat prompts from such words. The weights are random; the answers are noise, which
is all a cache and latency benchmark needs.

Usage: scripts/make-tiny-gguf.py OUT_DIR   (writes OUT_DIR/tiny.gguf and OUT_DIR/tokenizer.json)
Needs PyPI gguf, tokenizers and numpy (scripts/install-llama-server.sh installs them).
"""

import json
import random
import sys
from pathlib import Path

import gguf
import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

VOCAB = 4096
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
N_EMBD, N_LAYER, N_HEAD, N_FF, N_CTX = 64, 2, 4, 128, 65536


def corpus(rng: random.Random) -> list[str]:
    """Sentences of pronounceable lowercase words with a Zipf-like frequency."""
    onsets = "b c d f g h j k l m n p r s t v w z br ch cl dr fl gr pl pr sh st th tr".split()
    vowels = "a e i o u ai ea ee oo ou".split()
    codas = ["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng"]
    words = sorted(
        {
            "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.randint(1, 3)))
            + rng.choice(codas)
            for _ in range(6000)
        }
    )
    weights = [1.0 / (i + 1) ** 0.8 for i in range(len(words))]
    return [" ".join(rng.choices(words, weights, k=24)) for _ in range(20000)]


def train_tokenizer(rng: random.Random) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(rng), trainer)
    return tok


def write_gguf(path: Path, tok: Tokenizer, rng: np.random.Generator) -> None:
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    types = [
        gguf.TokenType.CONTROL if t in SPECIAL else gguf.TokenType.NORMAL for t in tokens
    ]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("kvsweep-tiny")
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD)
    w.add_rope_dimension_count(N_EMBD // N_HEAD)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(vocab["<|endoftext|>"])
    w.add_eos_token_id(vocab["<|im_end|>"])
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML)

    def tensor(name: str, *shape: int, scale: float = 0.02) -> None:
        w.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    tensor("token_embd.weight", len(tokens), N_EMBD)
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    tensor("output.weight", len(tokens), N_EMBD)
    for i in range(N_LAYER):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            tensor(f"blk.{i}.{part}.weight", N_EMBD, N_EMBD)
        tensor(f"blk.{i}.ffn_gate.weight", N_FF, N_EMBD)
        tensor(f"blk.{i}.ffn_up.weight", N_FF, N_EMBD)
        tensor(f"blk.{i}.ffn_down.weight", N_EMBD, N_FF)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(random.Random(42))
    tok.save(str(out / "tokenizer.json"))
    write_gguf(out / "tiny.gguf", tok, np.random.default_rng(42))
    print(out / "tiny.gguf")


if __name__ == "__main__":
    main()
