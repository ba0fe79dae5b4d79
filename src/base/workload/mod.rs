//! A cell's workload: what runs against its engine, `kvsweep replay` or `kvsweep test KIND`,
//! with its arguments typed.
//!
//! The arguments live here, apart from the replay and the testers that run them, so that a
//! cell's plan (cell.json, in [`crate::data::artifact`]) carries them as data: a spec's `replay:` and
//! `tester:` options deserialize into these structs when the spec loads, the command line's
//! flags parse into them, and a cell's script hands the plan itself to `kvsweep replay --plan`
//! (or `kvsweep test --plan`) instead of spelling it back out as flags.

pub mod agentx;
pub mod control;
pub mod options;
pub mod replay;
pub mod tester;

use std::path::Path;

use anyhow::{Context, Result};
use clap::Parser;
use serde::{Deserialize, Serialize};

use self::replay::ReplayArgs;
use self::tester::{TestArgs, Tester};

/// A workload command line, parsed exactly as the `kvsweep` command line would parse it.
#[derive(Parser)]
#[command(no_binary_name = true)]
struct WorkloadFlags {
    #[command(subcommand)]
    command: Workload,
}

/// What a cell runs against its engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Subcommand)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    Replay(ReplayArgs),
    Test(TestArgs),
}

/// Parses a workload command line (`replay ...` or `test KIND ...`).
pub fn parse(argv: &[String]) -> Result<Workload, clap::Error> {
    WorkloadFlags::try_parse_from(argv).map(|f| f.command)
}

/// The part of a cell's plan (cell.json) that says what runs; the rest of the plan is the
/// engine's and the report's, read elsewhere ([`crate::data::artifact`]).
#[derive(Deserialize)]
struct PlanWorkload {
    workload: Workload,
}

/// The workload of the cell plan at `path` (a cell.json), for `--plan`.
pub(crate) fn read_plan(path: &Path) -> Result<Workload> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the plan {}", path.display()))?;
    let plan: PlanWorkload = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a cell plan", path.display()))?;
    Ok(plan.workload)
}

/// Where a cell's workload runs: what `--plan` leaves to the command line.
pub(crate) struct RunAt<'a> {
    pub plan: &'a Path,
    pub url: &'a str,
    /// A replay's traces (a tester has none).
    pub traces: Option<&'a Path>,
    /// The cell's results directory; a tester writes into its `tester/`.
    pub out: &'a Path,
}

impl Workload {
    /// The `kvsweep` arguments that run this workload from its plan file (commands.txt): the
    /// plan says what runs, the flags where.
    pub(crate) fn plan_argv(&self, at: &RunAt<'_>) -> Result<Vec<String>> {
        let path = |p: &Path| p.display().to_string();
        Ok(match self {
            Workload::Replay(_) => {
                let traces = at
                    .traces
                    .context("the cell replays traces but its plan names none")?;
                vec![
                    "replay".into(),
                    "--plan".into(),
                    path(at.plan),
                    "--traces".into(),
                    path(traces),
                    "--url".into(),
                    at.url.to_owned(),
                    "--out".into(),
                    path(at.out),
                ]
            }
            Workload::Test(_) => vec![
                "test".into(),
                "--plan".into(),
                path(at.plan),
                "--url".into(),
                at.url.to_owned(),
                "--output-dir".into(),
                path(&at.out.join("tester")),
            ],
        })
    }

    /// The seed that fixes what the workload sends (session order, prompt content; a tester's
    /// prompts), to give each repeat of a cell its own; `None` for a tester tool that sends
    /// nothing.
    pub fn seed_mut(&mut self) -> Option<&mut u64> {
        match self {
            Workload::Replay(a) => Some(&mut a.seed),
            Workload::Test(t) => match &mut t.tester {
                Tester::SinglePrompt(a) => Some(&mut a.common.seed),
                Tester::CacheRate(a) => Some(&mut a.common.seed),
                Tester::WorkingSet(a) => Some(&mut a.common.seed),
                Tester::Report(_) | Tester::Combine(_) => None,
            },
        }
    }

    /// The workload's seed (see [`Workload::seed_mut`]).
    pub fn seed(&self) -> Option<u64> {
        self.clone().seed_mut().copied()
    }

    /// The synthetic test this workload runs, when it is one (`cache-rate`, ...).
    pub(crate) fn tester_kind(&self) -> Option<&'static str> {
        match self {
            Workload::Replay(_) => None,
            Workload::Test(t) => Some(t.tester.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(argv: &[&str]) -> Workload {
        let argv: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
        parse(&argv).expect("parses")
    }

    #[test]
    fn a_plan_carries_the_workload_as_json_and_back() {
        let w = parsed(&[
            "test",
            "cache-rate",
            "--output-dir",
            "out",
            "--context-sizes",
            "4000",
            "--working-set-size",
            "80000",
        ]);
        let json = serde_json::to_string(&w).expect("serializes");
        assert!(
            json.starts_with(r#"{"test":{"tester":{"cache-rate":"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Workload>(&json).expect("reads"), w);
    }

    #[test]
    fn a_plan_file_gives_its_workload_and_the_command_that_runs_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = parsed(&["replay", "--traces", "t", "--out", "o", "--users", "3"]);
        let plan = dir.path().join("cell.json");
        let json = serde_json::json!({"format_version": 2, "workload": w, "port": 1});
        std::fs::write(&plan, json.to_string()).expect("write");
        assert_eq!(read_plan(&plan).expect("reads"), w);
        let at = RunAt {
            plan: &plan,
            url: "http://127.0.0.1:9",
            traces: Some(Path::new("traces")),
            out: Path::new("res"),
        };
        let argv = w.plan_argv(&at).expect("argv");
        assert_eq!(argv[..2], ["replay", "--plan"]);
        assert!(
            argv.windows(2).any(|p| p == ["--traces", "traces"]),
            "{argv:?}"
        );
        assert!(argv.windows(2).any(|p| p == ["--out", "res"]), "{argv:?}");
        let test = parsed(&["test", "single-prompt", "--output-dir", "o"]);
        let argv = test.plan_argv(&at).expect("argv");
        assert_eq!(argv[..2], ["test", "--plan"]);
        assert_eq!(argv.last().map(String::as_str), Some("res/tester"));
        assert!(read_plan(&dir.path().join("none.json")).is_err());
    }
}
