//! `kvsweep sim-server`: a simulated inference server, the default engine where there is no GPU.
//!
//! A real HTTP server speaking the OpenAI API whose behaviour under cache pressure follows vLLM:
//! a block prefix cache sized from the model's KV bytes per token and the runner's HBM, an optional
//! host-memory offload tier, continuous batching with chunked prefill and preemption, and step times
//! from a roofline of the runner's GPUs. Its numbers are simulated, and every artifact says so
//! (engine `sim`).

mod cache;
pub mod calibration;
mod cost;
mod engine;
mod http;
pub mod metrics;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::http::StatusCode;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

pub use cache::{Allocation, CacheConfig, PrefixCache, block_hashes};
pub use cost::{CostModel, StepWork};
pub use engine::{Event, FinishReason, Request, VirtualTime};

use crate::base::capacity;
use crate::base::model::{self, KvDtype};
use crate::base::runner::RunnerSet;
use crate::base::shutdown::Shutdown;
use crate::base::tokenizer::Tokenizer;
use calibration::Calibration;
use engine::{Engine, EngineConfig};
use http::{AppState, Faults, OutputVocab};
use metrics::Flavor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OnOff {
    On,
    Off,
}

/// Run the simulated OpenAI-compatible inference server.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Port to listen on (0 picks a free one; the ready line says which).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The runner whose GPUs are simulated (runners/*.yaml).
    #[arg(long, default_value = "h100")]
    pub runner: String,
    /// Model preset (see `model.preset` in sweeps/README.md).
    #[arg(long, default_value = "llama-3.1-8b")]
    pub model: String,
    /// Name the API serves the model as (default: the preset name).
    #[arg(long)]
    served_model_name: Option<String>,
    /// KV cache and weight dtype.
    #[arg(long, value_enum, default_value = "bf16")]
    pub dtype: KvDtypeArg,
    /// Tensor-parallel size: HBM, FLOP/s and bandwidth are those of this many GPUs.
    #[arg(long, default_value_t = 1)]
    pub tp: u32,
    /// Share of HBM the engine may use (weights + KV cache).
    #[arg(long, default_value_t = 0.9)]
    pub(crate) gpu_memory_utilization: f64,
    /// KV-cache size in GB, instead of what is left of HBM after the weights.
    #[arg(long)]
    kv_cache_gb: Option<f64>,
    /// Host memory for the offload tier, GiB across the TP group (0: no tier).
    #[arg(long, default_value_t = 0.0)]
    pub offload_gb: f64,
    #[arg(long, value_enum, default_value = "on")]
    pub(crate) prefix_caching: OnOff,
    #[arg(long, default_value_t = 16)]
    pub block_size: usize,
    #[arg(long, default_value_t = 131_072)]
    pub max_model_len: usize,
    #[arg(long, default_value_t = 256)]
    pub max_num_seqs: usize,
    #[arg(long, default_value_t = 8192)]
    pub max_num_batched_tokens: usize,
    /// A calibration file (`kvsweep calibrate`): step times from its fitted model instead of
    /// the roofline, and the KV capacity, block size, --max-num-seqs and
    /// --max-num-batched-tokens of the engine it was fitted to (--runner, --model, --dtype,
    /// --kv-cache-gb and --gpu-memory-utilization are then unused; the model is served under
    /// the calibration's name unless --served-model-name says otherwise).
    #[arg(long, value_name = "FILE")]
    pub calibration: Option<PathBuf>,
    /// Run this many times faster than modelled time: a step modelled at 10 ms takes 1 ms at
    /// speed 10. Served rates are then this many times the modelled hardware's, latencies this
    /// many times shorter; /v1/models reports the speed (`sim_speed`) so results can say so.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// A testing aid: every engine step takes this many times longer than modelled (1.1: a
    /// planted 10 % slowdown), so that the regression gate (`kvsweep gate`) can be shown to
    /// catch a slower build. Not a model of anything; leave at 1 to measure.
    #[arg(long, default_value_t = 1.0, value_name = "F")]
    pub slowdown: f64,
    /// Every engine step takes no time and prefills are not chunked (for benchmarking clients).
    #[arg(long)]
    pub instant: bool,
    /// Seed for generated text, output lengths and fault choices.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A Hugging Face tokenizer.json (default: tiktoken o200k_base).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Metric names to expose on /metrics.
    #[arg(long, value_enum, default_value = "vllm")]
    metrics_flavor: Flavor,
    /// Largest request body accepted, in MiB (413 above).
    #[arg(long, default_value_t = 64)]
    max_body_mb: usize,
    /// Share of requests answered with --fail-status instead of being served.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) fail_rate: f64,
    /// Status of injected failures (429 and 503 carry Retry-After: 1).
    #[arg(long, default_value_t = 500)]
    pub fail_status: u16,
    /// Pause this long after a stream's first token (or before a non-streamed answer).
    #[arg(long, default_value_t = 0)]
    stall_ms: u64,
    /// Share of requests that stall (with --stall-ms).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) stall_rate: f64,
    /// Share of streams cut off half-way, without `[DONE]`.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) drop_stream_rate: f64,
    /// /health answers 503 (and completions are refused) for this long after start.
    #[arg(long, default_value_t = 0.0)]
    startup_delay_s: f64,
    /// Crash (exit with status 101, mid-stream for any open request) this many seconds after
    /// start: an engine dying under load, for testing what a cell records then.
    #[arg(long)]
    pub exit_after_s: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KvDtypeArg {
    Fp8,
    Bf16,
}

/// The simulated hardware and model, resolved from the arguments.
#[derive(Debug, Clone)]
pub struct SimSetup {
    pub cache: CacheConfig,
    pub cost: CostModel,
    pub model_name: String,
    pub kv_bytes_per_token: u64,
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
}

/// The setup a calibration fixes: its step model, KV capacity and scheduling limits.
pub(crate) fn calibrated_setup(args: &SimArgs, c: &Calibration) -> SimSetup {
    let l = &c.limits;
    let block_bytes = (l.kv_bytes_per_token.max(1) * l.block_size as u64) as f64;
    SimSetup {
        cache: CacheConfig {
            hbm_blocks: l.kv_capacity_tokens / l.block_size,
            offload_blocks: (args.offload_gb * 1024f64.powi(3) / block_bytes)
                .floor()
                .max(0.0) as usize,
            block_size: l.block_size,
            prefix_caching: args.prefix_caching == OnOff::On,
        },
        cost: CostModel::calibrated(c),
        model_name: args
            .served_model_name
            .clone()
            .unwrap_or_else(|| c.identity.model.clone()),
        kv_bytes_per_token: l.kv_bytes_per_token,
        max_num_seqs: l.max_num_seqs,
        max_num_batched_tokens: l.max_num_batched_tokens,
    }
}

/// Where the simulated model stops on its own for `prompt` (a request without `ignore_eos`),
/// as the HTTP server decides it with `--seed seed`.
pub(crate) fn natural_output_len(seed: u64, prompt: &[u32]) -> u32 {
    http::natural_len(seed, http::prompt_key(prompt))
}

/// The simulated engine on a virtual clock, for `kvsweep predict`: the same step function the
/// HTTP server runs, with no sleeping.
pub struct VirtualEngine(Engine<VirtualTime>);

impl VirtualEngine {
    pub fn new(sim: &SimSetup, flavor: Flavor) -> Self {
        Self(Engine::new(
            EngineConfig {
                max_num_seqs: sim.max_num_seqs.max(1),
                max_batched_tokens: sim.max_num_batched_tokens.max(1),
                speed: 1.0,
                instant: false,
                flavor,
            },
            sim.model_name.clone(),
            PrefixCache::new(sim.cache),
            sim.cost,
        ))
    }

    pub fn submit(&mut self, req: Request<VirtualTime>) {
        self.0.submit(req);
    }

    /// Runs one step from `now`; returns when it ends, or `None` when nothing can run.
    pub fn step(&mut self, now: f64) -> Option<f64> {
        self.0
            .step(VirtualTime(now), |d| VirtualTime(now + d))
            .map(|d| now + d)
    }

    pub fn busy(&self) -> bool {
        self.0.busy()
    }

    /// Tokens per KV block (prompts are hashed by whole blocks).
    pub fn block_size(&self) -> usize {
        self.0.block_size()
    }

    pub(crate) fn metrics_text(&self) -> String {
        self.0.metrics_text()
    }
}

/// Sizes the cache and the cost model. Errors when the model does not fit the simulated GPUs.
pub(crate) fn setup(args: &SimArgs, runners: &RunnerSet) -> Result<SimSetup> {
    if let Some(path) = &args.calibration {
        return Ok(calibrated_setup(args, &Calibration::load(path)?));
    }
    let runner = runners.get(&args.runner).with_context(|| {
        format!(
            "unknown runner `{}`; known: {}",
            args.runner,
            runners.names().join(", ")
        )
    })?;
    let preset = model::preset(&args.model).with_context(|| {
        format!(
            "unknown model preset `{}`; known: {}",
            args.model,
            model::preset_names().join(", ")
        )
    })?;
    if args.tp == 0 || runner.gpus_per_node % args.tp != 0 {
        bail!(
            "--tp {} does not divide the {} GPUs of runner `{}`",
            args.tp,
            runner.gpus_per_node,
            runner.name
        );
    }
    if args.block_size == 0 || args.speed.is_nan() || args.speed <= 0.0 {
        bail!("--block-size and --speed must be positive");
    }
    if !(args.slowdown.is_finite() && args.slowdown > 0.0) {
        bail!("--slowdown must be a positive factor (1 = as modelled)");
    }
    let mut geometry = preset.geometry;
    geometry.dtype = match args.dtype {
        KvDtypeArg::Fp8 => KvDtype::Fp8,
        KvDtypeArg::Bf16 => KvDtype::Bf16,
    };
    let weight_bytes =
        capacity::weight_bytes(f64::from(geometry.params_b), geometry.dtype.bytes() as f64);
    let kv_bytes = match args.kv_cache_gb {
        Some(gb) => gb * 1e9,
        None => capacity::kv_bytes(
            runner.hbm_gb_per_gpu,
            f64::from(args.tp),
            args.gpu_memory_utilization,
            weight_bytes,
        ),
    };
    let per_token = geometry.kv_bytes_per_token();
    let block_bytes = (per_token * args.block_size as u64) as f64;
    let hbm_blocks = (kv_bytes / block_bytes).floor();
    if hbm_blocks < 1.0 {
        bail!(
            "{} ({:.0} GB of weights) leaves no room for a KV cache on {} × {} with --gpu-memory-utilization {}",
            args.model,
            weight_bytes / 1e9,
            args.tp,
            runner.name,
            args.gpu_memory_utilization
        );
    }
    let offload_blocks = (args.offload_gb * 1024f64.powi(3) / block_bytes)
        .floor()
        .max(0.0) as usize;
    Ok(SimSetup {
        cache: CacheConfig {
            hbm_blocks: hbm_blocks as usize,
            offload_blocks,
            block_size: args.block_size,
            prefix_caching: args.prefix_caching == OnOff::On,
        },
        cost: CostModel::new(runner, &geometry, args.tp, weight_bytes),
        model_name: args
            .served_model_name
            .clone()
            .unwrap_or_else(|| args.model.clone()),
        kv_bytes_per_token: per_token,
        max_num_seqs: args.max_num_seqs,
        max_num_batched_tokens: args.max_num_batched_tokens,
    })
}

pub fn run(
    args: &SimArgs,
    runners: &RunnerSet,
    runtime: &Handle,
    shutdown: &Shutdown,
) -> Result<()> {
    let sim = setup(args, runners)?;
    let tokenizer = Tokenizer::load(args.tokenizer.as_deref())?;
    let fail_status = StatusCode::from_u16(args.fail_status)
        .ok()
        .filter(|s| s.is_client_error() || s.is_server_error())
        .with_context(|| {
            format!(
                "--fail-status {} is not an HTTP error status",
                args.fail_status
            )
        })?;
    runtime.block_on(serve(args.clone(), sim, tokenizer, fail_status, shutdown))
}

async fn serve(
    args: SimArgs,
    sim: SimSetup,
    tokenizer: Tokenizer,
    fail_status: StatusCode,
    shutdown: &Shutdown,
) -> Result<()> {
    let addr: SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .with_context(|| format!("`{}:{}` is not a socket address", args.host, args.port))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;

    let (tx, rx) = mpsc::unbounded_channel();
    let engine = Engine::new(
        EngineConfig {
            max_num_seqs: sim.max_num_seqs.max(1),
            max_batched_tokens: sim.max_num_batched_tokens.max(1),
            speed: args.speed / args.slowdown,
            instant: args.instant,
            flavor: args.metrics_flavor,
        },
        sim.model_name.clone(),
        PrefixCache::new(sim.cache),
        sim.cost,
    );
    tokio::spawn(engine.run(rx));

    let vocab = OutputVocab::new(&tokenizer);
    let state = Arc::new(AppState {
        engine: tx,
        tokenizer,
        vocab,
        model_name: sim.model_name.clone(),
        max_model_len: args.max_model_len,
        kv_capacity_tokens: sim.cache.hbm_blocks * sim.cache.block_size,
        block_size: sim.cache.block_size,
        speed: if args.instant { None } else { Some(args.speed) },
        runner: args.runner.clone(),
        seed: args.seed,
        faults: Faults {
            fail_rate: args.fail_rate,
            fail_status,
            stall: Duration::from_millis(args.stall_ms),
            stall_rate: args.stall_rate,
            drop_stream_rate: args.drop_stream_rate,
        },
        ready_at: Instant::now() + Duration::from_secs_f64(args.startup_delay_s.max(0.0)),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        requests: AtomicU64::new(0),
    });
    let app = http::router(state, args.max_body_mb.saturating_mul(1024 * 1024));
    // Watched before the ready line is printed, so a signal sent as soon as the line appears
    // stops the server cleanly instead of killing it.
    let stop = shutdown.stop()?;
    println!(
        "kvsweep sim-server (simulated) listening on http://{local} — model {} on {} × {}, KV cache {} tokens{}, prefix caching {}, {}",
        sim.model_name,
        args.tp,
        args.runner,
        sim.cache.hbm_blocks * sim.cache.block_size,
        if sim.cache.offload_blocks > 0 {
            format!(
                " + offload tier {} tokens",
                sim.cache.offload_blocks * sim.cache.block_size
            )
        } else {
            String::new()
        },
        if sim.cache.prefix_caching {
            "on"
        } else {
            "off"
        },
        if args.instant {
            "instant steps".to_owned()
        } else {
            format!("{}× real time", args.speed)
        },
    );
    // Streams are many small writes: without TCP_NODELAY, Nagle's algorithm and delayed ACKs
    // hold tokens back by up to 40 ms.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    if let Some(after) = args.exit_after_s {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(after.max(0.0))).await;
            eprintln!("kvsweep sim-server: exiting after {after}s (--exit-after-s)");
            std::process::exit(101);
        });
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            stop.await;
        })
        .await
        .context("the HTTP server failed")
}
