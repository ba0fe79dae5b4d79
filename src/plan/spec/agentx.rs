//! One AgentX job of an InferenceX master config (an object of the list `kvsweep matrix` prints
//! for master configs, as a GitHub job receives it in `toJSON(matrix)`) read as a one-cell sweep,
//! so `render` and `run-cell` run it like any other cell.
//!
//! Only single-node jobs of frameworks `vllm` and `sglang` can run. A job whose launch was
//! recorded from InferenceX's own job script (`crate::base::recipe`) starts exactly that command; one
//! without (another commit's job, a script the import did not find) says so and falls back to
//! the runner's flags plus what is the job's (parallelism, DP attention, MTP, the sequence cap).

use serde::Deserialize;

use super::{
    Cell, CellFields, LoadOptions, Model, OffloadBackend, OffloadBudget, Settings, Shape, Sweep,
    check_parallelism, find_runner, options,
};
use super::{TraceSource, Traces};
use crate::base::kinds::{EngineKind, Offload, TraceFormat};
use crate::base::recipe::JobLaunch;
use crate::base::runner::RunnerSet;
use crate::base::yaml::{SpecError, YamlDoc};
use crate::data::trace_cache::RemoteTraces;

/// What renders; the message names it whenever a job does not.
const SUPPORTED: &str = "kvsweep renders single-node AgentX jobs (scenario-type agentic-coding, tp without prefill/decode workers) of framework vllm or sglang, with kv-offloading none or dram through vLLM's native, lmcache or vllm-simple backend or SGLang's hicache";

/// Keys that only a master-config job has; any of them marks a file as one.
pub(super) fn is_job(keys: &[String]) -> bool {
    keys.iter().any(|k| k == "scenario-type") && keys.iter().any(|k| k == "exp-name")
}

/// The speculative tokens InferenceX's MTP launch scripts use (vLLM `num_speculative_tokens`,
/// SGLang `--speculative-num-steps`).
const MTP_STEPS: u32 = 3;

/// A job as the generator writes it (its validation's `SingleNodeAgenticMatrixEntry`, plus the
/// multi-node fields, so such a job is refused by name rather than as unknown fields).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Job {
    image: String,
    model: String,
    model_prefix: String,
    precision: String,
    framework: String,
    runner: String,
    tp: Option<u32>,
    #[serde(default = "one")]
    pp: u32,
    #[serde(default = "one")]
    dcp_size: u32,
    #[serde(default = "one")]
    pcp_size: u32,
    #[serde(default = "one")]
    ep: u32,
    #[serde(default)]
    dp_attn: bool,
    spec_decoding: String,
    conc: serde_norway::Value,
    kv_offloading: String,
    kv_offload_backend: Option<Backend>,
    total_cpu_dram_gb: u64,
    duration: u64,
    exp_name: String,
    scenario_type: String,
    prefill: Option<serde_norway::Value>,
    #[serde(rename = "decode")]
    _decode: Option<serde_norway::Value>,
    #[serde(rename = "disagg")]
    _disagg: Option<bool>,
    router: Option<serde_norway::Value>,
    #[serde(rename = "kv-p2p-transfer")]
    _kv_p2p_transfer: Option<String>,
    #[serde(rename = "run-eval")]
    _run_eval: Option<bool>,
    #[serde(rename = "eval-only")]
    _eval_only: Option<bool>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Backend {
    name: String,
    #[serde(rename = "version")]
    _version: Option<String>,
}

pub(super) fn load(doc: &YamlDoc, opts: LoadOptions<'_>) -> Result<Sweep, SpecError> {
    let job: Job = doc.parse()?;
    let refuse = |field: &str, why: String| doc.error(field, format!("{why}; {SUPPORTED}"));
    if job.scenario_type != "agentic-coding" {
        return Err(refuse(
            "scenario-type",
            format!("`{}` is not an AgentX job", job.scenario_type),
        ));
    }
    let Some(tp) = job.tp.filter(|_| job.prefill.is_none()) else {
        return Err(refuse("prefill", "multi-node jobs (prefill and decode workers) are listed by `kvsweep matrix` but not rendered".into()));
    };
    let engine = match job.framework.as_str() {
        "vllm" => EngineKind::Vllm,
        "sglang" => EngineKind::Sglang,
        other => {
            return Err(refuse(
                "framework",
                format!("framework `{other}` is not rendered"),
            ));
        }
    };
    if job.pp > 1 {
        return Err(refuse("pp", "pipeline parallelism is not rendered".into()));
    }
    if job.pcp_size > 1 {
        return Err(refuse(
            "pcp-size",
            "prefill context parallelism is not rendered".into(),
        ));
    }
    if engine == EngineKind::Sglang && job.dcp_size > 1 {
        return Err(refuse(
            "dcp-size",
            "SGLang decode context parallelism is not rendered".into(),
        ));
    }
    let users = match &job.conc {
        serde_norway::Value::Number(n) => n
            .as_u64()
            .and_then(|u| u32::try_from(u).ok())
            .filter(|&u| u > 0),
        _ => None,
    }
    .ok_or_else(|| doc.error("conc", "expected one positive concurrency"))?;
    let (offload, backend) = match (job.kv_offloading.as_str(), &job.kv_offload_backend) {
        ("none", _) => (Offload::Off, OffloadBackend::Native),
        ("dram", Some(b)) => (
            Offload::On,
            backend(engine, &b.name).ok_or_else(|| {
                refuse(
                    "kv-offload-backend.name",
                    format!("offload backend `{}` is not rendered for {engine}", b.name),
                )
            })?,
        ),
        (other, _) => {
            return Err(refuse(
                "kv-offloading",
                format!("kv-offloading `{other}` without a backend is not rendered"),
            ));
        }
    };
    let runner_name = match opts.runner {
        Some(r) => r.to_owned(),
        None => our_runner(&job.runner, opts.runners).ok_or_else(|| {
            doc.error(
                "runner",
                format!(
                    "no runner file matches InferenceX runner `{}`; give --runner (one of: {})",
                    job.runner,
                    opts.runners.names().join(", ")
                ),
            )
        })?,
    };
    let runner = find_runner(doc, opts.runners, &runner_name, "runner")?;
    let cell = Cell {
        name: job.exp_name.clone(),
        runner: Some(runner.name.clone()),
        tp,
        // InferenceX writes ep 1 for "no expert parallelism"; ours is 0.
        ep: if job.ep > 1 { job.ep } else { 0 },
        users,
        offload,
    };
    check_parallelism(doc, &cell, Some(runner), &CellFields { tp: "tp", ep: "ep" })?;
    if job.dp_attn && (2 * users) % tp != 0 {
        return Err(doc.error("conc", format!("DP attention needs 2 × conc divisible by tp, as InferenceX's scripts check (conc {users}, tp {tp})")));
    }
    let key = crate::base::recipe::JobKey {
        runner: job.runner.clone(),
        exp_name: job.exp_name.clone(),
        framework: job.framework.clone(),
        precision: job.precision.clone(),
        tp,
        ep: job.ep,
        dp_attn: job.dp_attn,
        router: job
            .router
            .as_ref()
            .and_then(|r| r.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_owned),
    };
    let (recipe, engine_args, script_loader) = match crate::base::recipe::for_job(&key)
        .map_err(|e| doc.error("exp-name", format!("{e:#}")))?
    {
        // InferenceX's LMCache scripts start LMCache servers beside the engine, which its
        // recorded command then talks to; kvsweep starts none, so the runner's LMCache flags
        // stand in.
        JobLaunch::Recorded { recipe, .. } if backend == OffloadBackend::Lmcache => {
            eprintln!(
                "kvsweep: InferenceX's launch {} for {} talks to LMCache servers its script starts beside the engine, which kvsweep does not: the engine starts with runner {}'s LMCache flags and the job's parallelism instead",
                recipe.name, job.exp_name, runner.name
            );
            (None, engine_args(engine, &job, tp, users), None)
        }
        JobLaunch::Recorded {
            recipe,
            weka_loader_override,
            container_patches,
        } => {
            if !container_patches.is_empty() {
                eprintln!(
                    "kvsweep: InferenceX's script {} patches {} inside the image before it starts the engine; kvsweep starts the image as it is",
                    recipe.name,
                    container_patches.join(", ")
                );
            }
            (Some(recipe), Vec::new(), weka_loader_override)
        }
        unrecorded => {
            let why = match unrecorded {
                JobLaunch::Unrecorded { script } => format!(
                    "InferenceX's job script {script} is missing or stops before the engine at the recorded commit"
                ),
                _ => format!(
                    "the job is not among those in {}",
                    crate::base::recipe::RECORDED_PATH
                ),
            };
            eprintln!(
                "kvsweep: no recorded InferenceX launch for {} on {} ({why}): the engine starts with runner {}'s flags and the job's parallelism, not InferenceX's command",
                job.exp_name, job.runner, runner.name
            );
            (None, engine_args(engine, &job, tp, users), None)
        }
    };
    let (traces, missing_traces_hint) = corpus_traces(doc, &job.model_prefix, script_loader)?;
    let offload_budget = (offload == Offload::On).then(|| {
        // total-cpu-dram-gb is decimal GB; budgets are GiB.
        OffloadBudget::Gib(job.total_cpu_dram_gb as f64 * 1e9 / f64::from(1u32 << 30))
    });
    Ok(Sweep {
        path: doc.path().to_path_buf(),
        shape: Shape::Native,
        settings: Settings {
            name: job.exp_name.clone(),
            model: Some(Model {
                name: job.model,
                path: None,
                max_len: None,
                preset: None,
                geometry: None,
            }),
            engine,
            image: Some(job.image),
            precision: Some(job.precision),
            duration_s: job.duration,
            traces,
            missing_traces_hint,
            workload: options::replay(doc, &agentx_replay())?,
            engine_args,
            recipe,
            tp_recipes: Vec::new(),
            offload_budget,
            offload_backend: backend,
            economics: None,
            validity: crate::base::validity::ValidityThresholds::default(),
            repeats: 1,
        },
        cells: vec![cell],
        matrix_field: String::new(),
        matrix_location: (1, 1),
    })
}

/// InferenceX's replay of an AgentX job (`build_replay_cmd`): the AgentX scenario over the chat
/// API (the cell sets the users to `conc` and the duration to the job's).
fn agentx_replay() -> indexmap::IndexMap<String, serde_norway::Value> {
    [("scenario", "agentx"), ("api", "chat")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), serde_norway::Value::String(v.to_owned())))
        .collect()
}

/// Environment variables that name where this machine fetches InferenceX's corpus from: the
/// URL (`{dataset}` stands for the Hugging Face dataset) and the sha256 of what it serves.
const CORPUS_URL_VAR: &str = "KVSWEEP_AGENTX_TRACES_URL";
const CORPUS_SHA256_VAR: &str = "KVSWEEP_AGENTX_TRACES_SHA256";

/// The corpus InferenceX replays for the job (`resolve_trace_source`: the model prefix, the
/// script's `WEKA_LOADER_OVERRIDE`, else the environment's), named by URL and sha256 for the
/// trace cache when [`CORPUS_URL_VAR`] and [`CORPUS_SHA256_VAR`] say where it is; otherwise no
/// traces, and a hint naming the corpus for the error that asks for `--traces`.
fn corpus_traces(
    doc: &YamlDoc,
    model_prefix: &str,
    script_loader: Option<String>,
) -> Result<(Option<Traces>, Option<String>), SpecError> {
    let loader = script_loader.or_else(|| std::env::var("WEKA_LOADER_OVERRIDE").ok());
    let corpus = crate::base::recipe::corpus(model_prefix, loader.as_deref())
        .map_err(|e| doc.error("model-prefix", format!("{e:#}")))?;
    let url = std::env::var(CORPUS_URL_VAR).ok();
    let sha256 = std::env::var(CORPUS_SHA256_VAR).ok();
    match (url, sha256) {
        (Some(url), Some(sha256)) => {
            let url = url.replace("{dataset}", &corpus.dataset);
            let remote = RemoteTraces::new(&url, Some(&sha256), None).map_err(|e| {
                doc.error(
                    "model-prefix",
                    format!("{CORPUS_URL_VAR} / {CORPUS_SHA256_VAR}: {e}"),
                )
            })?;
            Ok((
                Some(Traces {
                    source: TraceSource::Url(remote),
                    format: TraceFormat::Auto,
                }),
                None,
            ))
        }
        _ => Ok((
            None,
            Some(format!(
                "InferenceX replays the Hugging Face dataset {} (AIPerf loader {}) for this job: give --traces PATH to a copy, or set {CORPUS_URL_VAR} (`{{dataset}}` is replaced by the dataset) and {CORPUS_SHA256_VAR} so that each cell fetches it, checked, into the trace cache",
                corpus.dataset, corpus.loader
            )),
        )),
    }
}

/// Our backend for an AgentX `kv-offload-backend.name` on `engine`.
fn backend(engine: EngineKind, name: &str) -> Option<OffloadBackend> {
    match (engine, name) {
        (EngineKind::Vllm, "native") | (EngineKind::Sglang, "hicache") => {
            Some(OffloadBackend::Native)
        }
        (EngineKind::Vllm, "lmcache") => Some(OffloadBackend::Lmcache),
        (EngineKind::Vllm, "vllm-simple") => Some(OffloadBackend::SimpleCpu),
        _ => None,
    }
}

/// The runner file for an InferenceX runner label: `cluster:b200-dgxc` and `b200-nscale` → `b200`.
fn our_runner(label: &str, runners: &RunnerSet) -> Option<String> {
    let label = label
        .strip_prefix(super::master::config::CLUSTER_LABEL_PREFIX)
        .unwrap_or(label);
    let gpu = label.split('-').next()?;
    runners.get(gpu).map(|r| r.name.clone())
}

/// The job's engine flags beyond what our runner files give, as InferenceX's launch scripts
/// set them: DP attention (vLLM: TP 1 × DP tp; SGLang: `--enable-dp-attention`), MTP, decode context
/// parallelism, and vLLM's sequence cap of twice the users (per DP rank).
fn engine_args(engine: EngineKind, job: &Job, tp: u32, users: u32) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |words: &[&str]| a.extend(words.iter().map(|w| (*w).to_owned()));
    let tp_s = tp.to_string();
    match engine {
        EngineKind::Vllm => {
            if job.dp_attn {
                // Repeated flags: the last one wins, over the runner's tensor-parallel size.
                push(&["--tensor-parallel-size", "1", "--data-parallel-size", &tp_s]);
            }
            if job.dcp_size > 1 {
                push(&["--decode-context-parallel-size", &job.dcp_size.to_string()]);
            }
            if job.spec_decoding == "mtp" {
                let config =
                    format!(r#"{{"method": "mtp", "num_speculative_tokens": {MTP_STEPS}}}"#);
                push(&["--speculative-config", &config]);
            }
            let seqs = if job.dp_attn {
                2 * users / tp
            } else {
                2 * users
            };
            push(&["--max-num-seqs", &seqs.max(1).to_string()]);
        }
        _ => {
            if job.dp_attn {
                push(&["--enable-dp-attention", "--dp-size", &tp_s]);
            }
            if job.spec_decoding == "mtp" {
                let steps = MTP_STEPS.to_string();
                let drafts = (MTP_STEPS + 1).to_string();
                push(&[
                    "--speculative-algorithm",
                    "EAGLE",
                    "--speculative-num-steps",
                    &steps,
                    "--speculative-eagle-topk",
                    "1",
                    "--speculative-num-draft-tokens",
                    &drafts,
                ]);
            }
        }
    }
    a
}
