//! `kvsweep replay`'s arguments and the choices they name.
//!
//! Kept apart from the run itself so that what a flag means (and which combinations are refused)
//! can be read and tested without a server, and so that a cell's plan (cell.json) can carry them
//! typed.

use std::path::PathBuf;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use super::{agentx, control};
use crate::base::kinds::{Api, TraceFormat};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Timing {
    /// Wait only the trace's think time between a response and the next request.
    #[default]
    ThinkOnly,
    /// Think time plus the original API time × --api-time-scale.
    ApiScaled,
    /// Keep the trace's own request spacing (`t`), never sending before the previous answer.
    Original,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OnLong {
    Skip,
    Truncate,
}

/// Replay agentic traces against a server and measure TTFT, inter-token latency, throughput and
/// cache hits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct ReplayArgs {
    /// The server's base URL (http://host:port); repeat for several endpoints (each session
    /// sticks to one).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: Vec<String>,
    /// Model name to request (default: the first model /v1/models lists).
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long, value_enum, default_value = "completions")]
    pub api: Api,
    /// The served model's Hugging Face tokenizer.json: chat prompts are made of its words
    /// (default: tiktoken o200k_base), completions prompts of ids inside its vocabulary.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Trace files or directories (repeatable).
    #[arg(long, required = true)]
    pub traces: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    pub format: TraceFormat,
    /// Tokens per hash id in JSON Lines traces [default: 512 for Mooncake, 16 for Qwen-Bailian].
    #[arg(long)]
    pub block_size: Option<u32>,
    /// A malformed trace record stops the run instead of being skipped.
    #[arg(long)]
    pub strict: bool,
    /// Concurrent users, each replaying one session at a time.
    #[arg(long, default_value_t = 1)]
    pub users: u32,
    /// Stop sending after this many seconds (0: when the sessions run out).
    #[arg(long, default_value_t = 0.0)]
    pub duration: f64,
    /// Spread the users' first requests evenly over this many seconds instead of sending them all
    /// at once.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) ramp_up: f64,
    /// Requests sent in the first this many seconds are recorded in requests.csv but left out of
    /// summary.json's figures: the server's caches and queues are still filling.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) warmup_window: f64,
    /// From this many seconds on, stop the run when it is over-saturated (requests in flight and
    /// TTFT both rising through the run): such a point can only be invalid. 0: never.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) stop_when_saturated: f64,
    /// Seconds after --duration to wait for answers still streaming; requests still running then
    /// are abandoned (counted in metadata.json, not in requests.csv).
    #[arg(long, default_value_t = 30.0)]
    pub drain: f64,
    /// Start sessions again (as new users, with fresh content) when they run out.
    #[arg(long)]
    pub recycle: bool,
    #[arg(long, value_enum, default_value = "think-only")]
    pub timing: Timing,
    /// Multiplies every wait.
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    #[arg(long, default_value_t = 1.0)]
    pub(crate) api_time_scale: f64,
    /// Longest single wait, seconds (before --time-scale).
    #[arg(long, default_value_t = 600.0)]
    pub(crate) max_delay: f64,
    /// Longest prompt, tokens (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub max_context: u32,
    #[arg(long, value_enum, default_value = "skip")]
    pub on_long: OnLong,
    /// Leave out sessions with fewer requests.
    #[arg(long, default_value_t = 1)]
    pub(crate) min_requests: usize,
    /// Fixes session order and prompt content.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Ask the server to generate exactly the trace's output length.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Send every request at its trace timestamp, without waiting for earlier answers (Mooncake style).
    #[arg(long)]
    pub(crate) fixed_schedule: bool,
    /// Seconds before an unanswered request counts as a timeout.
    #[arg(long, default_value_t = 600.0)]
    pub(crate) request_timeout: f64,
    /// Seconds per row of periods.csv.
    #[arg(long, default_value_t = 30.0)]
    pub(crate) assessment_period: f64,
    /// Results directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Names the engine in the results; `sim` marks them simulated [default: `sim` when the
    /// server's /v1/models says it is kvsweep's simulator, else `unknown`].
    #[arg(long)]
    pub engine_label: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub control: control::ControlArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub agentx: Box<agentx::AgentxArgs>,
}

/// A value no run can use: the field it is in and why. The command line names the field by its
/// flag (`--warm-prefix-pct: ...`, the `Display` form), a spec by its key (`replay.warm_prefix_pct`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--{}: {message}", field.replace('_', "-"))]
pub struct Invalid {
    /// The field name (`warm_prefix_pct`).
    pub field: &'static str,
    pub message: String,
}

impl ReplayArgs {
    /// Refuses what the types let through but no run can do: the one check of these values,
    /// whether they came from flags, a spec or a plan.
    pub fn check(&self) -> Result<(), Invalid> {
        let invalid = |field, message: String| Err(Invalid { field, message });
        if self.users == 0 {
            return invalid("users", "must be at least 1".into());
        }
        if !(self.warmup_window.is_finite() && self.warmup_window >= 0.0) {
            return invalid(
                "warmup_window",
                "must be a number of seconds at least 0".into(),
            );
        }
        if let Err(e) = control::check_share(self.control.warm_prefix_pct) {
            return invalid("warm_prefix_pct", e);
        }
        if self.duration > 0.0 && self.warmup_window >= self.duration {
            return invalid(
                "warmup_window",
                format!(
                    "{} s leaves nothing of the {} s duration to measure",
                    self.warmup_window, self.duration
                ),
            );
        }
        Ok(())
    }

    /// [`ReplayArgs::check`], as an error that names the flag.
    pub(crate) fn validate(&self) -> Result<()> {
        Ok(self.check()?)
    }

    /// The user count a closed-loop run starts with: `--users`, or with the adaptive controller
    /// (`--max-users`) `--start-users` (default 1) kept within 1..=max.
    pub(crate) fn initial_users(&self) -> u32 {
        match (self.control.max_users, self.control.start_users) {
            (Some(max), start) => start.unwrap_or(1).clamp(1, max.max(1)),
            (None, _) => self.users,
        }
    }
}

/// `kvsweep replay`'s command line: the replay's flags, or a cell's plan (`--plan cell.json`,
/// what a cell's script runs) with only where it runs (`--url`, `--traces`, `--out`) as flags.
/// It converts into [`ReplayArgs`], the plan's own form.
#[derive(Debug, Clone)]
pub struct ReplayCommand {
    plan: Option<PathBuf>,
    args: ReplayArgs,
    /// The fields whose flags the command line gave (not left at their defaults).
    given: Vec<String>,
}

/// What a replay run from a plan takes from its command line.
const WHERE_IT_RUNS: &[&str] = &["plan", "url", "traces", "out"];

impl clap::Args for ReplayCommand {
    fn augment_args(command: clap::Command) -> clap::Command {
        ReplayArgs::augment_args(
            command.arg(
                clap::Arg::new("plan")
                    .long("plan")
                    .value_name("CELL_JSON")
                    .value_parser(clap::value_parser!(PathBuf))
                    .help(
                        "Replay the workload of a cell's plan (its cell.json); the flags then \
                         only say where: --url, --traces, --out",
                    ),
            ),
        )
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

impl clap::FromArgMatches for ReplayCommand {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let given = matches
            .ids()
            .filter(|id| {
                matches.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine)
            })
            .map(|id| id.to_string())
            .collect();
        Ok(ReplayCommand {
            plan: matches.get_one::<PathBuf>("plan").cloned(),
            args: ReplayArgs::from_arg_matches(matches)?,
            given,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl TryFrom<ReplayCommand> for ReplayArgs {
    type Error = anyhow::Error;

    /// The flags' replay, or the plan's with the flags' `--url`, `--traces` and `--out`;
    /// checked either way.
    fn try_from(command: ReplayCommand) -> Result<Self> {
        let args = match &command.plan {
            None => command.args,
            Some(path) => {
                if let Some(id) = command
                    .given
                    .iter()
                    .find(|id| !WHERE_IT_RUNS.contains(&id.as_str()))
                {
                    bail!(
                        "--{} cannot be given with --plan: the plan {} says what the replay runs, the flags only where (--url, --traces, --out)",
                        id.replace('_', "-"),
                        path.display()
                    );
                }
                let super::Workload::Replay(mut plan) = super::read_plan(path)? else {
                    bail!(
                        "the plan {} runs a synthetic test: give it to `kvsweep test --plan`",
                        path.display()
                    );
                };
                plan.url = command.args.url;
                plan.traces = command.args.traces;
                plan.out = command.args.out;
                plan
            }
        };
        args.validate()?;
        Ok(args)
    }
}

/// `argv` (`replay ...`) parsed as the command line would be, for the replay's unit tests.
#[cfg(test)]
pub(crate) fn parse_argv(argv: &[&str]) -> Result<ReplayArgs, clap::Error> {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ReplayArgs,
    }
    Cli::try_parse_from(argv).map(|c| c.args)
}

/// `kvsweep replay --traces t.jsonl --out out EXTRA...`, for the replay's unit tests.
#[cfg(test)]
pub(crate) fn parse(extra: &[&str]) -> Result<ReplayArgs, clap::Error> {
    parse_argv(&[&["replay", "--traces", "t.jsonl", "--out", "out"], extra].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let a = parse(&[]).expect("parses");
        assert_eq!(a.url, ["http://127.0.0.1:8000"]);
        assert_eq!(a.api, Api::Completions);
        assert_eq!(a.format, TraceFormat::Auto);
        assert_eq!(a.timing, Timing::ThinkOnly);
        assert_eq!(a.on_long, OnLong::Skip);
        assert_eq!((a.users, a.min_requests, a.seed), (1, 1, 0));
        assert_eq!(
            (a.drain, a.max_delay, a.request_timeout),
            (30.0, 600.0, 600.0)
        );
        assert!(a.validate().is_ok());
    }

    #[test]
    fn value_names_stay_as_scripts_write_them() {
        let a = parse(&[
            "--api",
            "chat",
            "--timing",
            "api-scaled",
            "--on-long",
            "truncate",
            "--format",
            "bailian",
        ])
        .expect("parses");
        assert_eq!(
            (a.api, a.timing, a.on_long, a.format),
            (
                Api::Chat,
                Timing::ApiScaled,
                OnLong::Truncate,
                TraceFormat::Bailian
            )
        );
        assert!(parse(&["--timing", "think_only"]).is_err());
    }

    #[test]
    fn traces_and_out_are_required() {
        assert!(parse_argv(&["replay", "--out", "o"]).is_err());
        assert!(parse_argv(&["replay", "--traces", "t"]).is_err());
    }

    /// `kvsweep replay ARGS` as main parses it, converted into the replay's arguments.
    fn command(argv: &[&str]) -> Result<ReplayArgs> {
        use clap::Parser;

        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            command: ReplayCommand,
        }
        let cli = Cli::try_parse_from([&["replay"], argv].concat())?;
        ReplayArgs::try_from(cli.command)
    }

    #[test]
    fn a_plan_gives_the_workload_and_the_flags_where_it_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let planned = parse(&["--users", "6", "--seed", "4", "--api", "chat"]).expect("parses");
        let plan = dir.path().join("cell.json");
        let workload = super::super::Workload::Replay(planned.clone());
        let json = serde_json::json!({ "workload": workload });
        std::fs::write(&plan, json.to_string()).expect("write");
        let plan = plan.to_str().expect("utf-8");
        let run = [
            "--plan",
            plan,
            "--traces",
            "here",
            "--out",
            "o2",
            "--url",
            "http://h:1",
        ];
        let args = command(&run).expect("runs the plan");
        assert_eq!(
            args,
            ReplayArgs {
                url: vec!["http://h:1".into()],
                traces: vec!["here".into()],
                out: "o2".into(),
                ..planned
            }
        );
        let err = command(&[&run[..], &["--users", "2"]].concat()).expect_err("a second say");
        assert!(
            err.to_string()
                .contains("--users cannot be given with --plan"),
            "{err}"
        );
        let flags = command(&["--traces", "t", "--out", "o", "--users", "2"]).expect("flags");
        assert_eq!(flags.users, 2);
        let err = command(&["--traces", "t", "--out", "o", "--warm-prefix-pct", "50"])
            .expect_err("a percentage");
        assert!(
            err.to_string()
                .starts_with("--warm-prefix-pct: 50 is not a share"),
            "{err}"
        );
    }

    #[test]
    fn zero_users_is_refused() {
        let a = parse(&["--users", "0"]).expect("parses");
        let err = a.validate().expect_err("zero users");
        assert!(err.to_string().contains("--users"), "{err}");
    }

    #[test]
    fn initial_users_follow_the_adaptive_controller() {
        let a = parse(&["--users", "8"]).expect("parses");
        assert_eq!(a.initial_users(), 8, "closed loop: --users");
        let mut a = parse(&["--users", "8"]).expect("parses");
        a.control.max_users = Some(16);
        assert_eq!(a.initial_users(), 1, "adaptive: starts at one");
        a.control.start_users = Some(4);
        assert_eq!(a.initial_users(), 4);
        a.control.start_users = Some(40);
        assert_eq!(a.initial_users(), 16, "never past --max-users");
        a.control.start_users = Some(0);
        assert_eq!(a.initial_users(), 1, "never below one");
    }
}
