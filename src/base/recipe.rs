//! InferenceX's engine launches, recorded from its own job scripts.
//!
//! `scripts/import-inferencex-recipes.sh INFERENCEX_CHECKOUT` runs the job script of every
//! single-node vLLM and SGLang AgentX job of InferenceX's master configs with stub programs and
//! keeps what the script starts: the program, its arguments and the environment the script
//! exported (`runners/inferencex-recipes/launches.json`, with InferenceX's LICENSE and commit).
//! A cell that carries a [`Recipe`] starts exactly that command (see `engine::launch`), with the
//! deliberate differences of [`DELIBERATE_DIFFERENCES`], instead of the runner's generic flags.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The recorded launches, built into the binary: a job renders the same on every machine.
const RECORDED: &str = include_str!("../../runners/inferencex-recipes/launches.json");

/// Where the recordings live, for messages.
pub(crate) const RECORDED_PATH: &str = "runners/inferencex-recipes/launches.json";

/// What a cell started from a recipe does differently from InferenceX's script, and why. The
/// README lists the same; the render test allows these and nothing else.
pub const DELIBERATE_DIFFERENCES: &[(&str, &str)] = &[
    (
        "--port",
        "the cell's port (InferenceX: 8888, or 8889 for the engine behind its DP-attention router)",
    ),
    (
        "--enable-prompt-tokens-details",
        "added to vLLM where the script lacks it: the replay reads cached prompt tokens from each answer's usage",
    ),
];

/// An engine launch recorded from an InferenceX job script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// The job script's name without `.sh`: `dsv4_fp4_b200_vllm_mtp`.
    pub name: String,
    /// The InferenceX commit the script was recorded at.
    pub(crate) inferencex_commit: String,
    pub image: String,
    /// The program the script runs (`vllm`, `python3` for `-m sglang.launch_server`).
    pub program: String,
    pub args: Vec<String>,
    /// Every variable the script exported for the engine (`VLLM_*`, `SGLANG_*`, `NCCL_*`,
    /// `PYTHONHASHSEED`...).
    pub env: BTreeMap<String, String>,
    /// A native spec's recipe: the runner adds its flags for the cell's offload mode (the
    /// launch was recorded without an offload connector).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) offload_from_runner: bool,
}

/// Flags that put a KV offload tier in an engine command.
const OFFLOAD_FLAGS: &[&str] = &[
    "--kv-transfer-config",
    "--kv_offloading_size",
    "--kv-offloading-size",
    "--kv-offloading-backend",
    "--enable-hierarchical-cache",
];

impl Recipe {
    /// The value of `flag` in the arguments (`--flag value`), if it is there with one.
    fn value(&self, flag: &str) -> Option<&str> {
        let at = self.args.iter().position(|a| a == flag)?;
        self.args.get(at + 1).map(String::as_str)
    }

    /// The GPUs the launch uses: vLLM's tensor × data parallel sizes, SGLang's `--tp`.
    fn gpus(&self) -> Option<u32> {
        let n = |flag| self.value(flag).and_then(|v| v.parse::<u32>().ok());
        match self.program.as_str() {
            "vllm" => Some(n("--tensor-parallel-size")? * n("--data-parallel-size").unwrap_or(1)),
            _ => n("--tp"),
        }
    }

    fn is_offload_flag(arg: &str) -> bool {
        OFFLOAD_FLAGS.contains(&arg) || arg.starts_with("--hicache-")
    }

    fn has_offload(&self) -> bool {
        self.args.iter().any(|a| Self::is_offload_flag(a))
    }

    /// Takes out the offload flags and their values.
    fn strip_offload(&mut self) {
        let mut kept = Vec::with_capacity(self.args.len());
        let mut args = self.args.iter().peekable();
        while let Some(arg) = args.next() {
            if Self::is_offload_flag(arg) {
                args.next_if(|v| !v.starts_with("--"));
            } else {
                kept.push(arg.clone());
            }
        }
        self.args = kept;
    }

    /// The concurrent sequences it is sized for (`--max-num-seqs`, `--max-running-requests`),
    /// per DP rank.
    fn sequences(&self) -> u32 {
        ["--max-num-seqs", "--max-running-requests"]
            .iter()
            .find_map(|f| self.value(f).and_then(|v| v.parse().ok()))
            .unwrap_or(0)
    }
}

/// The file the import script writes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Recorded {
    inferencex_commit: String,
    #[serde(rename = "recorded_by")]
    _recorded_by: String,
    jobs: Vec<RecordedJob>,
    launches: Vec<RecordedLaunch>,
    unrecorded: Vec<Unrecorded>,
}

/// What names a job in InferenceX's job list (an exp-name repeats across frameworks,
/// precisions, parallelism and routers).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct JobKey {
    pub runner: String,
    pub exp_name: String,
    pub framework: String,
    pub precision: String,
    pub tp: u32,
    pub ep: u32,
    pub(crate) dp_attn: bool,
    /// The router's name, if the job has one.
    pub router: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RecordedJob {
    #[serde(flatten)]
    key: JobKey,
    launch: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordedLaunch {
    script: String,
    image: String,
    program: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    /// `WEKA_LOADER_OVERRIDE` as the script exported it: the corpus it replays, when not the
    /// default for its model.
    weka_loader_override: Option<String>,
    /// Files inside the engine's image the script patches (`sed -i`) before starting it.
    container_patches: Vec<String>,
}

/// A job the import saw but could not record, and the script it looked for.
#[derive(Debug, Deserialize)]
struct Unrecorded {
    #[serde(flatten)]
    key: JobKey,
    script: String,
}

fn recorded() -> Result<&'static Recorded> {
    static PARSED: OnceLock<Result<Recorded, String>> = OnceLock::new();
    PARSED
        .get_or_init(|| serde_json::from_str(RECORDED).map_err(|e| format!("{RECORDED_PATH}: {e}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("the built-in recorded launches do not parse: {e}"))
}

impl RecordedLaunch {
    fn recipe(&self, commit: &str) -> Recipe {
        Recipe {
            name: self.script.trim_end_matches(".sh").to_owned(),
            inferencex_commit: commit.to_owned(),
            image: self.image.clone(),
            program: self.program.clone(),
            args: self.args.clone(),
            env: self.env.clone(),
            offload_from_runner: false,
        }
    }
}

/// What the recordings say about one job.
#[derive(Debug)]
pub(crate) enum JobLaunch {
    Recorded {
        recipe: Recipe,
        /// The AIPerf corpus loader the script names instead of its model's default.
        weka_loader_override: Option<String>,
        /// Files the script patches inside the image before the engine starts.
        container_patches: Vec<String>,
    },
    /// The import found no job script for it, or the script stopped before the engine.
    Unrecorded { script: String },
    /// Not among the jobs the import listed (another InferenceX commit, a hand-made job).
    NotListed,
}

/// The recorded launch of the job `key`.
pub(crate) fn for_job(key: &JobKey) -> Result<JobLaunch> {
    let r = recorded()?;
    if let Some(job) = r.jobs.iter().find(|j| j.key == *key) {
        let launch = r.launches.get(job.launch).with_context(|| {
            format!(
                "{RECORDED_PATH}: job {} names launch {} of {}",
                key.exp_name,
                job.launch,
                r.launches.len()
            )
        })?;
        return Ok(JobLaunch::Recorded {
            recipe: launch.recipe(&r.inferencex_commit),
            weka_loader_override: launch.weka_loader_override.clone(),
            container_patches: launch.container_patches.clone(),
        });
    }
    Ok(r.unrecorded
        .iter()
        .find(|u| u.key == *key)
        .map_or(JobLaunch::NotListed, |u| JobLaunch::Unrecorded {
            script: u.script.clone(),
        }))
}

/// The recorded launches of the job script `name` (`dsv4_fp4_b200_vllm_mtp`), one per distinct
/// command the script gave for InferenceX's jobs.
fn by_name(name: &str) -> Result<Vec<Recipe>> {
    let r = recorded()?;
    let found: Vec<Recipe> = r
        .launches
        .iter()
        .filter(|l| l.script.trim_end_matches(".sh") == name)
        .map(|l| l.recipe(&r.inferencex_commit))
        .collect();
    if found.is_empty() {
        let mut names: Vec<&str> = r
            .launches
            .iter()
            .map(|l| l.script.trim_end_matches(".sh"))
            .collect();
        names.sort_unstable();
        names.dedup();
        bail!(
            "no recorded InferenceX launch named `{name}` in {RECORDED_PATH}; recorded: {}",
            names.join(", ")
        );
    }
    Ok(found)
}

/// The launch of job script `name` that a native spec's cell at `tp` starts: of the launches
/// recorded at that GPU count, one without an offload tier if there is one, sized for the most
/// concurrent sequences; its offload flags (the connector, HiCache's) are taken out, and the
/// runner adds its own for the cell's offload mode (`offload_from_runner`).
pub(crate) fn for_tp(name: &str, tp: u32) -> Result<Recipe> {
    let all = by_name(name)?;
    let mut tps: Vec<u32> = all.iter().filter_map(Recipe::gpus).collect();
    tps.sort_unstable();
    tps.dedup();
    let mut recipe = all
        .into_iter()
        .filter(|r| r.gpus() == Some(tp))
        .max_by_key(|r| (!r.has_offload(), r.sequences()))
        .with_context(|| {
            format!(
                "recipe `{name}` has no launch recorded for tp {tp}; it has tp {}",
                tps.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    recipe.strip_offload();
    recipe.offload_from_runner = true;
    Ok(recipe)
}

/// InferenceX's AgentX corpora: AIPerf's public-dataset loader name → the Hugging Face dataset
/// (`benchmarks/benchmark_lib.sh`, `resolve_trace_source`, at the recorded commit).
const LOADERS: &[(&str, &str)] = &[
    (
        "semianalysis_cc_traces_weka_with_subagents",
        "semianalysisai/cc-traces-weka-061526",
    ),
    (
        "semianalysis_cc_traces_weka_with_subagents_256k",
        "semianalysisai/cc-traces-weka-061526-256k",
    ),
    (
        "semianalysis_cc_traces_weka_with_subagents_060226",
        "semianalysisai/cc-traces-weka-with-subagents-060226",
    ),
    (
        "semianalysis_cc_traces_weka_with_subagents_060226_256k",
        "semianalysisai/cc-traces-weka-with-subagents-060226-256k",
    ),
    (
        "semianalysis_cc_traces_weka_with_subagents_060526",
        "semianalysisai/cc-traces-weka-with-subagents-060526",
    ),
    (
        "semianalysis_cc_traces_weka_with_subagents_060526_256k",
        "semianalysisai/cc-traces-weka-with-subagents-060526-256k",
    ),
    (
        "semianalysis_cc_traces_weka_with_subagents_060826",
        "semianalysisai/cc-traces-weka-with-subagents-060826",
    ),
    (
        "semianalysis_cc_traces_weka_with_subagents_060826_256k",
        "semianalysisai/cc-traces-weka-with-subagents-060826-256k",
    ),
    (
        "semianalysis_cc_traces_weka_061326",
        "semianalysisai/cc-traces-weka-061326",
    ),
    (
        "semianalysis_cc_traces_weka_061326_256k",
        "semianalysisai/cc-traces-weka-061326-256k",
    ),
    (
        "semianalysis_cc_traces_weka_061526",
        "semianalysisai/cc-traces-weka-061526",
    ),
    (
        "semianalysis_cc_traces_weka_061526_256k",
        "semianalysisai/cc-traces-weka-061526-256k",
    ),
    (
        "semianalysis_cc_traces_weka_062126",
        "semianalysisai/cc-traces-weka-062126",
    ),
    (
        "semianalysis_cc_traces_weka_062126_256k",
        "semianalysisai/cc-traces-weka-062126-256k",
    ),
];

/// The corpus an AgentX job replays, as InferenceX picks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corpus {
    /// AIPerf's loader name (`--public-dataset`).
    pub loader: String,
    /// The Hugging Face dataset it downloads.
    pub dataset: String,
}

/// `resolve_trace_source`: `override_loader` (the job script's or the environment's
/// `WEKA_LOADER_OVERRIDE`), else the 062126 corpus for the families with a 1M-token context
/// (dsv4, glm5.2, minimaxm3, kimik3) and its 256k-capped variant for the others.
pub fn corpus(model_prefix: &str, override_loader: Option<&str>) -> Result<Corpus> {
    let long_context = ["dsv4", "glm5.2", "minimaxm3", "kimik3"]
        .iter()
        .any(|p| model_prefix.starts_with(p));
    let loader = override_loader.unwrap_or(if long_context {
        "semianalysis_cc_traces_weka_062126"
    } else {
        "semianalysis_cc_traces_weka_062126_256k"
    });
    let Some((_, dataset)) = LOADERS.iter().find(|(l, _)| *l == loader) else {
        bail!(
            "unknown WEKA_LOADER_OVERRIDE `{loader}`; InferenceX allows: {}",
            LOADERS
                .iter()
                .map(|(l, _)| *l)
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    Ok(Corpus {
        loader: loader.to_owned(),
        dataset: (*dataset).to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_recordings_parse_and_every_job_names_a_launch() {
        let r = recorded().expect("parses");
        assert!(r.jobs.len() > 100, "{} jobs", r.jobs.len());
        for j in &r.jobs {
            assert!(j.launch < r.launches.len(), "{:?}", j.key);
        }
    }

    #[test]
    fn a_native_spec_gets_the_launch_for_its_tp_without_offload() {
        let recipe = for_tp("dsv4_fp4_b200_vllm_mtp", 8).expect("tp 8");
        assert!(recipe.offload_from_runner);
        assert_eq!(recipe.gpus(), Some(8));
        assert!(!recipe.has_offload(), "{:?}", recipe.args);
        assert!(recipe.args.iter().any(|a| a == "--speculative-config"));
        let err = for_tp("dsv4_fp4_b200_vllm_mtp", 3).expect_err("no tp 3");
        assert!(err.to_string().contains("has tp 8"), "{err}");
    }

    #[test]
    fn the_corpus_follows_resolve_trace_source() {
        let long = corpus("dsv4", None).expect("dsv4");
        assert_eq!(long.dataset, "semianalysisai/cc-traces-weka-062126");
        let short = corpus("qwen3.5", None).expect("qwen");
        assert_eq!(short.dataset, "semianalysisai/cc-traces-weka-062126-256k");
        let pinned = corpus("dsv4", Some("semianalysis_cc_traces_weka_061326")).expect("pinned");
        assert_eq!(pinned.dataset, "semianalysisai/cc-traces-weka-061326");
        let err = corpus("dsv4", Some("nope")).expect_err("unknown");
        assert!(
            err.to_string()
                .contains("semianalysis_cc_traces_weka_062126_256k"),
            "{err}"
        );
    }

    #[test]
    fn a_job_finds_its_launch_and_a_script_its_launches() {
        let r = recorded().expect("parses");
        let job = &r.jobs[0];
        let JobLaunch::Recorded { recipe, .. } = for_job(&job.key).expect("lookup") else {
            panic!("not recorded")
        };
        assert!(by_name(&recipe.name).expect("by name").contains(&recipe));
        assert!(matches!(
            for_job(&JobKey {
                runner: "cluster:none".into(),
                ..job.key.clone()
            })
            .expect("lookup"),
            JobLaunch::NotListed
        ));
        let err = by_name("no_such_script").expect_err("unknown");
        assert!(err.to_string().contains(&recipe.name), "{err}");
    }
}
