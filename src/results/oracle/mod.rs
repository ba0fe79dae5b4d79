//! `kvsweep oracle`: offline bounds on the hit rate any KV cache could reach on a trace, and
//! what they mean for cards and machines (kvcache-upper-bound's definitions and files).
//!
//! `stream` turns a trace set into every request's reuse of earlier blocks; `bounds` computes
//! the content, relaxed, exact strict-prefix and LRU hit rates from it at any capacity; `plan`
//! turns hit rates into TPS and card counts; `buckets` runs that per prompt-length bucket;
//! `audit` checks the fast solvers against `naive` ones; `heuristic` and `calibrate` are the
//! trace-free estimate and its fit to a trace.

pub mod audit;
pub mod bounds;
pub mod buckets;
pub mod calibrate;
pub mod config;
pub mod heuristic;
pub mod naive;
pub mod plan;
pub mod replayed;
pub mod scenario;
pub mod stream;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::runtime::Handle;

use self::buckets::Analysis;
use self::config::{BucketDeployment, Config, Deployment, GIB, ModelProfile, Tier};
use self::stream::Scope;
use crate::base::capacity;
use crate::base::kinds::TraceFormat;
use crate::base::runner::RunnerSet;
use crate::data::artifact::write_json_atomic;
use crate::data::trace::{self, LoadOptions, TraceSet};
use crate::data::trace_cache;

/// Bound the best cache hit rate any cache could reach on a trace, and plan cards for it.
///
/// With trace paths and no subcommand: one deployment built from --runner and --model, the
/// four bounds at HBM and each --tiers capacity, written to --out.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct OracleArgs {
    #[command(subcommand)]
    pub action: Option<OracleAction>,
    #[command(flatten)]
    pub quick: QuickArgs,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum OracleAction {
    /// Bounds and planning per prompt-length bucket, from a config file.
    AnalyzeBuckets(AnalyzeArgs),
    /// analyze-buckets, plus a cross-check of the solvers against reference ones.
    AuditBuckets(AuditArgs),
    /// Trace-free estimate from a scenario description.
    EstimateMultiAgent(EstimateArgs),
    /// Fit the estimate's zipf_s and lru_like to a trace.
    CalibrateMultiAgent(CalibrateArgs),
}

/// Where traces come from.
#[derive(Debug, Clone, clap::Args)]
pub struct TraceInput {
    /// Tokens per hash id in JSON Lines traces [default: 512 for Mooncake, 16 for Qwen-Bailian].
    #[arg(long)]
    pub block_size: Option<u32>,
    #[arg(long, value_enum, default_value_t = TraceFormat::Auto)]
    pub format: TraceFormat,
    /// Read only the first N records (requests, in file order).
    #[arg(long, value_name = "N")]
    pub max_records: Option<usize>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct QuickArgs {
    /// Trace files or directories (kv-cache-tester JSON, Mooncake or Qwen-Bailian JSONL).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[arg(long, required = true)]
    pub out: Option<PathBuf>,
    /// A model preset, for KV bytes per token and weights.
    #[arg(
        long,
        default_value = "llama-3.1-70b",
        conflicts_with = "kv_bytes_per_token"
    )]
    pub model: String,
    /// KV bytes per token instead of a preset (then give --kv-gb-per-card).
    #[arg(long, requires = "kv_gb_per_card")]
    pub kv_bytes_per_token: Option<f64>,
    /// KV budget per GPU, GiB [default: what --gpu-memory-utilization of HBM leaves after weights].
    #[arg(long)]
    pub kv_gb_per_card: Option<f64>,
    #[arg(long, default_value = "h200")]
    pub runner: String,
    /// Tensor parallelism [default: the smallest power of two, up to one node of the runner, on
    /// which the model's weights leave a KV budget; printed and kept in metadata.json].
    #[arg(long)]
    pub tp: Option<u32>,
    /// GPUs in the deployment [default: one node of the runner].
    #[arg(long)]
    pub gpus: Option<u32>,
    #[arg(long, default_value_t = 0.9)]
    pub gpu_memory_utilization: f64,
    /// Extra KV tiers per machine, `LABEL=GiB`, comma-separated.
    #[arg(long, default_value = "HBM+1T=1024,HBM+10T=10240", value_parser = parse_tiers)]
    pub tiers: Tiers,
    #[arg(long, value_enum, default_value_t = Scope::Global)]
    pub scope: Scope,
    /// Do not count the KV of generated tokens.
    #[arg(long)]
    pub no_output_kv: bool,
    #[arg(long, default_value_t = 0.8)]
    pub alpha: f64,
    #[command(flatten)]
    pub input: TraceInput,
}

/// Extra tiers from the command line.
#[derive(Debug, Clone)]
pub struct Tiers(pub Vec<Tier>);

fn parse_tiers(s: &str) -> Result<Tiers, String> {
    let tiers = s
        .split(',')
        .filter(|t| !t.trim().is_empty())
        .map(|t| {
            let (label, gb) = t
                .split_once('=')
                .ok_or_else(|| format!("`{t}`: expected LABEL=GiB"))?;
            let gb: f64 = gb
                .trim()
                .parse()
                .map_err(|_| format!("`{t}`: `{gb}` is not a number of GiB"))?;
            Ok(Tier {
                label: label.trim().to_owned(),
                kv_gb_per_machine: gb,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Tiers(tiers))
}

#[derive(Debug, Clone, clap::Args)]
pub struct AnalyzeArgs {
    /// Trace files, directories or http(s) URLs.
    #[arg(long = "trace", required = true)]
    pub traces: Vec<String>,
    #[arg(long)]
    pub config: PathBuf,
    #[arg(long)]
    pub output_dir: PathBuf,
    #[command(flatten)]
    pub input: TraceInput,
}

#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub analyze: AnalyzeArgs,
    /// Requests per bucket the reference solvers recompute.
    #[arg(long, default_value_t = 256)]
    pub sample_request_limit: usize,
}

#[derive(Debug, Clone, clap::Args)]
pub struct EstimateArgs {
    #[arg(long)]
    pub config: PathBuf,
    #[arg(long)]
    pub output_dir: PathBuf,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CalibrateArgs {
    #[arg(long = "trace", required = true)]
    pub traces: Vec<String>,
    /// The trace-mode config (buckets and their deployments).
    #[arg(long)]
    pub bucket_config: PathBuf,
    /// The heuristic config whose scenario is fitted.
    #[arg(long)]
    pub heuristic_config: PathBuf,
    #[arg(long)]
    pub output_dir: PathBuf,
    #[command(flatten)]
    pub input: TraceInput,
}

/// `kvsweep oracle`; traces named by URL are fetched on `runtime`.
pub fn run(args: &OracleArgs, runners: &RunnerSet, runtime: &Handle) -> Result<()> {
    match &args.action {
        None => quick(&args.quick, runners, runtime),
        Some(OracleAction::AnalyzeBuckets(a)) => {
            let config = Config::load(&a.config)?;
            analyze_command(a, &config, "analyze-buckets", json!({}), runtime).map(|_| ())
        }
        Some(OracleAction::AuditBuckets(a)) => audit::run(a, runtime),
        Some(OracleAction::EstimateMultiAgent(a)) => heuristic::run(a),
        Some(OracleAction::CalibrateMultiAgent(a)) => calibrate::run(a, runtime),
    }
}

/// The one block size every file of `set` must share: hits are counted in blocks.
pub fn block_size(set: &TraceSet) -> Result<u32> {
    let mut sizes: Vec<u32> = set.sessions.iter().map(|s| s.block_size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    match sizes[..] {
        [] => Ok(0),
        [one] => Ok(one),
        _ => bail!(
            "the traces mix block sizes {sizes:?}; convert them to one (`kvsweep trace convert --block-size`)"
        ),
    }
}

/// Traces named by http(s) URL come from the trace cache (downloaded once, checked, then found
/// there by later runs); paths pass through.
fn fetch(traces: &[String], runtime: &Handle) -> Result<Vec<PathBuf>> {
    traces
        .iter()
        .map(|t| {
            if !(t.starts_with("http://") || t.starts_with("https://")) {
                return Ok(PathBuf::from(t));
            }
            let remote = trace_cache::RemoteTraces::new(t, None, None)
                .with_context(|| format!("cannot read the trace URL {t}"))?;
            runtime.block_on(trace_cache::fetch(&remote, &trace_cache::cache_dir()?))
        })
        .collect()
}

/// Loads traces, keeping only the first `max_records` requests (in file order) when asked.
pub fn load_traces(traces: &[String], input: &TraceInput, runtime: &Handle) -> Result<TraceSet> {
    let paths = fetch(traces, runtime)?;
    let mut set = trace::load(
        &paths,
        LoadOptions {
            format: input.format,
            jsonl_block_size: input.block_size,
            strict: false,
        },
    )?;
    if let Some(limit) = input.max_records {
        let mut left = limit;
        for session in &mut set.sessions {
            truncate(session, &mut left);
        }
        set.sessions.retain(|s| s.total_requests() > 0);
    }
    if set.sessions.is_empty() {
        bail!("no requests in {}", traces.join(", "));
    }
    Ok(set)
}

fn truncate(session: &mut trace::Session, left: &mut usize) {
    let keep = session.requests.len().min(*left);
    session.requests.truncate(keep);
    *left -= keep;
    for child in &mut session.children {
        truncate(child, left);
    }
    session.children.retain(|c| c.total_requests() > 0);
}

/// What metadata.json records about the traces.
fn trace_meta(set: &TraceSet, input: &TraceInput) -> Value {
    json!({
        "files": set.files,
        "digest": set.digest,
        "sessions": set.sessions.len(),
        "records_loaded": set.sessions.iter().map(|s| s.total_requests()).sum::<usize>(),
        "max_records": input.max_records,
        "skipped": set.skipped.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

/// The definitions every output uses, for metadata.json.
pub fn definitions() -> Value {
    json!({
        "block": "whole blocks of the trace's block size; a block is its path of hash ids (prefix-trie semantics)",
        "output_kv": "a request also writes its answer's whole blocks, named by the hash ids the first later prompt of its session that extends its prompt has at those positions; any later prompt with that path reads them",
        "hit_rate": "hit blocks × block size / input tokens",
        "content": "infinite cache: every block read before hits",
        "relaxed": "optimal offline cache of C blocks, any block may hit, running requests take no room (Belady with bypass)",
        "strict_prefix": "optimal offline cache of C blocks, hits are prefixes, the running request's blocks hold room; exact (interval-packing greedy)",
        "lru": "LRU cache of C blocks, prefix hits, deepest block of a request evicted first",
        "order": "requests served one at a time in time order; kv-cache-tester sessions all start at 0",
        "capacity": "replicas × floor(per-card KV budget / per-card KV bytes per token); extra tiers add kv_gb_per_machine GiB of whole-token KV per machine",
        "tps": "per-card TPS = baseline / (1 - alpha × hit rate)",
        "memory_units": "GiB",
    })
}

/// metadata.json at the start (status `running`) and the end (`complete`).
fn write_metadata(
    dir: &Path,
    command: &str,
    config: &Config,
    traces: Value,
    status: &str,
    extra: Value,
) -> Result<()> {
    let mut meta = json!({
        "tool": "kvsweep oracle",
        "version": crate::VERSION,
        "command": command,
        "status": status,
        "config": config,
        "traces": traces,
        "definitions": definitions(),
    });
    if let (Some(m), Value::Object(e)) = (meta.as_object_mut(), extra) {
        m.extend(e);
    }
    write_json_atomic(&dir.join("metadata.json"), &meta)
}

/// Runs an analysis and writes its tables, metadata.json and details.json.
/// `choices` (a JSON object) records in metadata.json how the command filled in what was not
/// given, such as the quick form's TP.
fn analyze_command(
    a: &AnalyzeArgs,
    config: &Config,
    command: &str,
    choices: Value,
    runtime: &Handle,
) -> Result<(TraceSet, Analysis)> {
    if config.bucket_deployments.is_empty() {
        bail!(
            "{}: bucket_deployments is empty; analyze-buckets needs at least one bucket",
            a.config.display()
        );
    }
    std::fs::create_dir_all(&a.output_dir)
        .with_context(|| format!("cannot create {}", a.output_dir.display()))?;
    let set = load_traces(&a.traces, &a.input, runtime)?;
    let started = Instant::now();
    let traces = trace_meta(&set, &a.input);
    write_metadata(
        &a.output_dir,
        command,
        config,
        traces.clone(),
        "running",
        choices.clone(),
    )?;
    let analysis = buckets::analyze(&set, config)?;
    write_outputs(&a.output_dir, &analysis)?;
    let mut results = json!({
            "elapsed_s": started.elapsed().as_secs_f64(),
            "block_size": analysis.block_size,
            "kv": analysis.kv,
            "deployments": analysis.buckets.iter().map(|b| json!({
                "bucket": b.label,
                "accelerator_count": b.bucket.deployment.accelerator_count,
                "cards_per_machine": b.bucket.deployment.cards_per_machine,
                "machines": plan::machines(b.bucket.deployment.accelerator_count, b.bucket.deployment.cards_per_machine),
                "capacity": b.capacity,
            })).collect::<Vec<_>>(),
    });
    if let (Some(r), Value::Object(c)) = (results.as_object_mut(), choices) {
        r.extend(c);
    }
    write_metadata(&a.output_dir, command, config, traces, "complete", results)?;
    print_summary(&analysis);
    Ok((set, analysis))
}

fn write_outputs(dir: &Path, analysis: &Analysis) -> Result<()> {
    buckets::write_tables(analysis, dir)?;
    write_json_atomic(&dir.join("details.json"), &buckets::details(analysis))
}

fn print_summary(analysis: &Analysis) {
    println!(
        "{:<12} {:>9} {:>9} {:>9} {:>9} {:>9}  bottleneck",
        "bucket", "requests", "content", "relaxed", "strict", "lru"
    );
    for b in &analysis.buckets {
        let h = b.hbm();
        println!(
            "{:<12} {:>9} {:>9.4} {:>9.4} {:>9.4} {:>9.4}  {}",
            b.label,
            b.requests,
            h.content,
            h.relaxed,
            h.strict_prefix,
            h.lru,
            h.bottleneck()
        );
    }
}

/// The config `kvsweep oracle PATH...` builds from its flags: one bucket, one deployment.
pub fn quick_config(q: &QuickArgs, runners: &RunnerSet) -> Result<QuickConfig> {
    let runner = runners.get(&q.runner).with_context(|| {
        format!(
            "unknown runner `{}`; known: {}",
            q.runner,
            runners.names().join(", ")
        )
    })?;
    let mut profile = match q.kv_bytes_per_token {
        Some(bytes) => ModelProfile {
            name: Some(format!("{bytes} bytes per token")),
            kv_bytes_per_token: Some(bytes),
            tp_size: 1,
            pp_size: 1,
            dtype_bytes: 2.0,
            weight_dtype_bytes: 2.0,
            ..ModelProfile::default()
        },
        None => ModelProfile::from_preset(&q.model)?,
    };
    let usable =
        capacity::kv_bytes(runner.hbm_gb_per_gpu, 1.0, q.gpu_memory_utilization, 0.0) / GIB;
    let choice = match q.tp {
        Some(tp) => TpChoice {
            tp: tp.max(1),
            why: "given with --tp".to_owned(),
        },
        None => smallest_fitting_tp(&profile, q, runner, usable)?,
    };
    profile.tp_size = choice.tp;
    let gpus = q.gpus.unwrap_or(runner.gpus_per_node);
    if !gpus.is_multiple_of(profile.tp_size) {
        bail!("--gpus {gpus} is not a multiple of tp {}", profile.tp_size);
    }
    let deployment = Deployment {
        name: Some("all".into()),
        accelerator_count: gpus,
        cards_per_machine: runner.gpus_per_node,
        machine_spec: Some(runner.name.clone()),
        hbm_kv_gb_per_card: q.kv_gb_per_card,
        gpu_memory_gb_per_card: q.kv_gb_per_card.is_none().then_some(usable),
        runtime_reserve_gb_per_card: None,
        anchors: config::Anchors {
            extra_capacity_tiers: Some(q.tiers.0.clone()),
            ..config::Anchors::default()
        },
    };
    let config = Config {
        model_profile: profile,
        bucket_deployments: vec![BucketDeployment {
            lower_tokens: 0,
            upper_tokens: None,
            deployment,
        }],
        deployments: vec![],
        prefill_savings_alpha: q.alpha,
        include_output_kvcache: !q.no_output_kv,
        scope: q.scope,
        anchors: config::Anchors::default(),
        heuristic_multi_agent: None,
    };
    config.check()?;
    Ok(QuickConfig { config, tp: choice })
}

/// The quick form's config and how its tensor parallelism was chosen.
#[derive(Debug, Clone)]
pub struct QuickConfig {
    pub config: Config,
    pub tp: TpChoice,
}

/// A deployment's tensor parallelism and why it is that one, for stdout and metadata.json.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TpChoice {
    pub tp: u32,
    pub why: String,
}

/// The smallest power-of-two TP, up to one node of the runner, on which the weights leave a KV
/// budget: a 70B model does not fit one 141 GB card, so TP 1 would be an error, not a default.
fn smallest_fitting_tp(
    profile: &ModelProfile,
    q: &QuickArgs,
    runner: &crate::base::runner::Runner,
    usable_gib: f64,
) -> Result<TpChoice> {
    if q.kv_gb_per_card.is_some() {
        return Ok(TpChoice {
            tp: 1,
            why: "--kv-gb-per-card gives the KV budget, so the weights need no room".to_owned(),
        });
    }
    let candidates = std::iter::successors(Some(1u32), |tp| Some(tp * 2))
        .take_while(|tp| *tp <= runner.gpus_per_node.max(1));
    let mut weights_at_1 = 0.0;
    for tp in candidates {
        let shape = ModelProfile {
            tp_size: tp,
            ..profile.clone()
        }
        .shape()?;
        if tp == 1 {
            weights_at_1 = shape.weight_bytes_per_card / GIB;
        }
        let kv_gib = usable_gib - shape.weight_bytes_per_card / GIB;
        if kv_gib > 0.0 {
            return Ok(TpChoice {
                tp,
                why: format!(
                    "the smallest TP of {} on which {}'s weights fit: {:.1} GiB of weights and {:.1} GiB of KV per card of {:.1} GiB usable",
                    runner.name,
                    q.model,
                    shape.weight_bytes_per_card / GIB,
                    kv_gib,
                    usable_gib
                ),
            });
        }
    }
    bail!(
        "{}'s weights ({weights_at_1:.1} GiB) leave no KV budget on one node of {} ({} GPUs of {usable_gib:.1} GiB usable each): give --kv-gb-per-card, or a runner with more memory",
        q.model,
        runner.name,
        runner.gpus_per_node
    )
}

fn quick(q: &QuickArgs, runners: &RunnerSet, runtime: &Handle) -> Result<()> {
    let QuickConfig { config, tp } = quick_config(q, runners)?;
    println!("deployment: tp {} ({})", tp.tp, tp.why);
    let out = q.out.clone().context("--out is required")?;
    let a = AnalyzeArgs {
        traces: q.paths.iter().map(|p| p.display().to_string()).collect(),
        config: PathBuf::from("(command line)"),
        output_dir: out,
        input: q.input.clone(),
    };
    analyze_command(&a, &config, "oracle", json!({ "tp_choice": tp }), runtime).map(|_| ())
}
