//! `kvsweep test`'s arguments: the synthetic cache testers and their tools
//! ([`crate::run::testers`] runs them).

use std::path::PathBuf;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::base::kinds::Api;

/// Synthetic cache testers: TTFT vs context, throughput vs hit rate, the working-set cliffs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct TestArgs {
    #[command(subcommand)]
    pub tester: Tester,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Subcommand)]
#[serde(rename_all = "kebab-case")]
pub enum Tester {
    /// Each context size cold (a miss) then warm (a hit): TTFT and throughput per size.
    SinglePrompt(SinglePromptArgs),
    /// Throughput and TTFT at set hit rates over a fixed working set.
    CacheRate(CacheRateArgs),
    /// Grow the working set to find the HBM and offload cliffs.
    WorkingSet(WorkingSetArgs),
    /// Redraw the plots and summaries of tester runs from their CSVs, and write index.html.
    Report(ReportArgs),
    /// Overlay several cache-rate runs (A/B of configurations).
    Combine(CombineArgs),
}

/// `kvsweep test`'s command line: a tester and its flags, or a cell's plan (`--plan
/// cell.json`, what a cell's script runs) with only where it runs as flags. It converts into
/// [`TestArgs`], the plan's own form.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TestCommand {
    /// Run the test of a cell's plan (its cell.json) instead of one named here.
    #[arg(long, value_name = "CELL_JSON", requires = "output_dir")]
    pub plan: Option<PathBuf>,
    /// With --plan: the server's base URL.
    #[arg(long, requires = "plan", default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// With --plan: where the test's files go.
    #[arg(long, requires = "plan")]
    pub(crate) output_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub tester: Option<Tester>,
}

impl TryFrom<TestCommand> for TestArgs {
    type Error = anyhow::Error;

    /// The tester named on the command line, or the plan's with the flags' `--url` and
    /// `--output-dir`.
    fn try_from(command: TestCommand) -> Result<Self> {
        let (plan, output_dir) = match (command.tester, command.plan, command.output_dir) {
            (Some(tester), _, _) => return Ok(TestArgs { tester }),
            (None, Some(plan), Some(dir)) => (plan, dir),
            (None, _, _) => bail!("give a test (`kvsweep test KIND ...`) or a cell's --plan"),
        };
        let super::Workload::Test(mut args) = super::read_plan(&plan)? else {
            bail!(
                "the plan {} runs a replay: give it to `kvsweep replay --plan`",
                plan.display()
            );
        };
        let common = args.tester.common_mut().ok_or_else(|| {
            anyhow::anyhow!(
                "the plan {}'s tester runs against no server",
                plan.display()
            )
        })?;
        common.url = command.url;
        common.output_dir = output_dir;
        Ok(args)
    }
}

/// Server and output settings every tester shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct Common {
    /// The server's base URL.
    #[arg(long, alias = "api-endpoint", default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Model name to request (default: the first model /v1/models lists).
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long, value_enum, default_value = "completions")]
    pub api: Api,
    /// The server's Hugging Face tokenizer.json, for --api chat.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Tokens generated per request.
    #[arg(long, default_value_t = 256)]
    pub output_tokens: u32,
    /// Cache block alignment of shared prefixes, tokens.
    #[arg(long, default_value_t = 256)]
    pub chunk_size: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Seconds before an unanswered request counts as a timeout.
    #[arg(long, default_value_t = 600.0)]
    pub(crate) request_timeout: f64,
    #[arg(long)]
    pub(crate) output_dir: PathBuf,
    /// Ignore progress.json and start over.
    #[arg(long)]
    pub(crate) force_restart: bool,
}

/// Which TTFT figure the limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum TtftMetric {
    Max,
    Avg,
    P95,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct ReportArgs {
    /// A tester's output directory, or a folder of them.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct CombineArgs {
    /// cache-rate output directories.
    #[arg(long, required = true, num_args = 1..)]
    pub(crate) output_dirs: Vec<PathBuf>,
    /// A label per directory (default: the directory names).
    #[arg(long, num_args = 1..)]
    pub labels: Vec<String>,
    #[arg(long, default_value = "combined_output")]
    pub output: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct SinglePromptArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    /// Smallest context, tokens (sizes double from here).
    #[arg(long, default_value_t = 1000)]
    pub min_tokens: u32,
    #[arg(long, default_value_t = 128_000)]
    pub max_tokens: u32,
    /// Context sizes to test instead of the doubling series.
    #[arg(long, num_args = 1..)]
    pub context_sizes: Vec<u32>,
    /// Cold/warm pairs per context size.
    #[arg(long, default_value_t = 5)]
    pub num_iterations: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Ramp concurrency until the TTFT limit, then measure at the peak.
    Sustained,
    /// Measure at --concurrency.
    Fixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Reinit {
    /// Warm the working set once per context size.
    Once,
    /// Warm it again before every hit rate.
    PerCacheRate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct CacheRateArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    #[command(flatten)]
    #[serde(flatten)]
    pub load: LoadShape,
    /// Context lengths to test, tokens.
    #[arg(long, required = true, num_args = 1..)]
    pub context_sizes: Vec<u32>,
    /// Tokens in the working set (distinct prefixes × context).
    #[arg(long)]
    pub working_set_size: u64,
    /// Target hit rates, percent.
    #[arg(long, num_args = 1.., default_values_t = (0..=20).map(|i| i * 5).collect::<Vec<u32>>())]
    pub(crate) cache_hit_rates: Vec<u32>,
    #[arg(long, value_enum, default_value = "sustained")]
    pub mode: Mode,
    #[arg(long, value_enum, default_value = "once")]
    pub(crate) reinit_strategy: Reinit,
    /// Pick prefixes at random instead of round-robin.
    #[arg(long)]
    pub(crate) random_working_set_selection: bool,
}

/// Concurrency and timing of a measured load, shared by cache-rate and working-set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct LoadShape {
    /// Concurrency in fixed mode.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 2)]
    pub(crate) start_concurrency: usize,
    #[arg(long, default_value_t = 2)]
    pub(crate) concurrency_increment: usize,
    #[arg(long, default_value_t = 1000)]
    pub(crate) max_concurrency: usize,
    /// Concurrency of the warm-up pass over the working set.
    #[arg(long, default_value_t = 16)]
    pub(crate) init_concurrency: usize,
    /// TTFT limit, seconds.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) max_ttft: f64,
    #[arg(long, value_enum, default_value = "p95")]
    pub(crate) ttft_metric: TtftMetric,
    /// Most seconds one hit rate may take (the ramp stops there).
    #[arg(long, default_value_t = 300.0)]
    pub(crate) test_duration: f64,
    /// Seconds per concurrency level of the ramp, and per measurement.
    #[arg(long, default_value_t = 60.0)]
    pub(crate) ramp_duration: f64,
    /// Measurements at the peak concurrency.
    #[arg(long, default_value_t = 3)]
    pub(crate) num_retries: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scale {
    Linear,
    Geometric,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct WorkingSetArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
    #[arg(long, required = true, num_args = 1..)]
    pub context_sizes: Vec<u32>,
    /// Smallest working set, tokens.
    #[arg(long)]
    pub min_working_set_size: u64,
    /// Largest working set, tokens.
    #[arg(long)]
    pub max_working_set_size: u64,
    /// Sizes to test between them (inclusive).
    #[arg(long, default_value_t = 10)]
    pub working_set_increments: u32,
    #[arg(long, value_enum, default_value = "linear")]
    pub scale: Scale,
    /// Target hit rates, percent.
    #[arg(long, num_args = 1.., default_values_t = vec![100u32])]
    pub(crate) cache_hit_rates: Vec<u32>,
    /// Concurrent requests.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Round-robin passes over the working set after the warm-up pass (each sends every prefix).
    #[arg(long, default_value_t = 2)]
    pub passes: u32,
    /// KV bytes per token, to report the cliffs in bytes too (or use --kv-model).
    #[arg(long)]
    pub kv_bytes_per_token: Option<f64>,
    /// A model preset whose KV bytes per token size the cliffs in bytes.
    #[arg(long)]
    pub(crate) kv_model: Option<String>,
}

impl Tester {
    /// The subcommand's name on the command line (`kvsweep test NAME`).
    pub fn name(&self) -> &'static str {
        match self {
            Tester::SinglePrompt(_) => "single-prompt",
            Tester::CacheRate(_) => "cache-rate",
            Tester::WorkingSet(_) => "working-set",
            Tester::Report(_) => "report",
            Tester::Combine(_) => "combine",
        }
    }

    /// The server and output settings of a tester that runs against a server.
    pub(crate) fn common_mut(&mut self) -> Option<&mut Common> {
        match self {
            Tester::SinglePrompt(a) => Some(&mut a.common),
            Tester::CacheRate(a) => Some(&mut a.common),
            Tester::WorkingSet(a) => Some(&mut a.common),
            Tester::Report(_) | Tester::Combine(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `kvsweep test ARGS` as main parses it, converted into the tester's arguments.
    fn command(argv: &[&str]) -> Result<TestArgs> {
        use clap::Parser;

        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            command: TestCommand,
        }
        let cli = Cli::try_parse_from([&["test"], argv].concat())?;
        TestArgs::try_from(cli.command)
    }

    #[test]
    fn a_plan_gives_the_test_and_the_flags_where_it_runs() {
        let named = command(&[
            "single-prompt",
            "--output-dir",
            "o",
            "--num-iterations",
            "2",
        ])
        .expect("a named test");
        let dir = tempfile::tempdir().expect("tempdir");
        let plan = dir.path().join("cell.json");
        let json = serde_json::json!({ "workload": super::super::Workload::Test(named.clone()) });
        std::fs::write(&plan, json.to_string()).expect("write");
        let plan = plan.to_str().expect("utf-8");
        let mut args = command(&["--plan", plan, "--url", "http://h:1", "--output-dir", "d"])
            .expect("runs the plan");
        let common = args.tester.common_mut().expect("a server test");
        assert_eq!(
            (common.url.as_str(), common.output_dir.to_str()),
            ("http://h:1", Some("d"))
        );
        common.url = "http://127.0.0.1:8000".into();
        common.output_dir = "o".into();
        assert_eq!(args, named);
        assert!(command(&["--plan", plan]).is_err(), "where the files go");
        assert!(command(&[]).is_err(), "neither a test nor a plan");
        assert!(command(&["--url", "http://h:1", "single-prompt", "--output-dir", "o"]).is_err());
    }
}
