//! A cell's workload: what runs against its engine, `kvsweep replay` or `kvsweep test KIND`,
//! with its arguments typed.
//!
//! The arguments live here, apart from the replay and the testers that run them, so that a
//! cell's plan (cell.json, in [`crate::artifact`]) can carry them typed: a spec's `replay:` and
//! `tester:` options become these structs when the spec loads, travel in the plan, and become a
//! command line only where a script needs one ([`Workload::argv`], used by render).

pub mod agentx;
pub mod argv;
pub mod control;
pub mod replay;
pub mod tester;

use anyhow::{Result, bail};
use clap::Parser;
use serde::{Deserialize, Serialize};

use self::argv::Choice;
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

/// The flags a cell's runner adds itself, where the cell runs: the server's URL, where the
/// traces are and where the results go.
const REPLAY_RUN_TIME: &[&str] = &["url", "traces", "out"];
const TESTER_RUN_TIME: &[&str] = &["url", "output_dir"];

/// The flags a cell sets itself (render), written out even at their defaults so that a script
/// says what its cell runs.
const REPLAY_CELL_SET: &[&str] = &[
    "model",
    "api",
    "users",
    "duration",
    "format",
    "engine_label",
];
const TESTER_CELL_SET: &[&str] = &["model", "api"];

/// The field names of the on/off flags (`--recycle`) of `replay` or `test KIND`, which take no
/// value on the command line.
pub fn switches(head: &[&str]) -> Vec<String> {
    use clap::{ArgAction, Subcommand};
    let mut command = Some(Workload::augment_subcommands(clap::Command::new("kvsweep")));
    for name in head {
        command = command.and_then(|c| c.find_subcommand(name).cloned());
    }
    command
        .map(|c| {
            c.get_arguments()
                .filter(|a| matches!(a.get_action(), ArgAction::SetTrue))
                .map(|a| a.get_id().to_string())
                .collect()
        })
        .unwrap_or_default()
}

impl Workload {
    /// The command line (`replay ...` or `test KIND ...`) that parses back into this workload,
    /// without the flags the runner adds where the cell runs (`--url`, `--traces`, `--out`,
    /// `--output-dir`), and without flags left at their defaults.
    pub fn argv(&self) -> Result<Vec<String>> {
        self.command_line(true)
    }

    /// The whole command line, the flags set where the cell runs included (commands.txt).
    pub fn full_argv(&self) -> Result<Vec<String>> {
        self.command_line(false)
    }

    fn command_line(&self, leave_out_run_time: bool) -> Result<Vec<String>> {
        let choice = |always, run_time: &'static [&'static str]| Choice {
            always,
            leave_out: match leave_out_run_time {
                true => run_time,
                false => &[],
            },
        };
        let (head, flags) = match self {
            Workload::Replay(a) => {
                let choice = choice(REPLAY_CELL_SET, REPLAY_RUN_TIME);
                (vec!["replay"], argv::flags(a, &choice)?)
            }
            Workload::Test(t) => {
                let choice = choice(TESTER_CELL_SET, TESTER_RUN_TIME);
                let flags = match &t.tester {
                    Tester::SinglePrompt(a) => argv::flags(a, &choice)?,
                    Tester::CacheRate(a) => argv::flags(a, &choice)?,
                    Tester::WorkingSet(a) => argv::flags(a, &choice)?,
                    Tester::Report(_) | Tester::Combine(_) => {
                        bail!("`kvsweep test report` and `combine` are not a cell's workload")
                    }
                };
                (vec!["test", t.tester.name()], flags)
            }
        };
        Ok(head.into_iter().map(str::to_owned).chain(flags).collect())
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
    pub fn tester_kind(&self) -> Option<&'static str> {
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

    /// `w`'s command line plus the flags set where the cell runs, parsed back.
    fn round_trip(w: &Workload, run_time: &[&str]) -> Workload {
        let mut argv = w.argv().expect("a command line");
        argv.extend(run_time.iter().map(|s| (*s).to_owned()));
        parse(&argv).unwrap_or_else(|e| panic!("{argv:?} does not parse: {e}"))
    }

    #[test]
    fn a_replay_with_every_kind_of_flag_comes_back_the_same() {
        let w = parsed(&[
            "replay",
            "--url",
            "http://a:1",
            "--url",
            "http://b:2",
            "--model",
            "m",
            "--api",
            "chat",
            "--traces",
            "t1",
            "--traces",
            "t2",
            "--format",
            "bailian",
            "--block-size",
            "16",
            "--strict",
            "--users",
            "7",
            "--duration",
            "12.5",
            "--timing",
            "api-scaled",
            "--on-long",
            "truncate",
            "--time-scale",
            "0.05",
            "--seed",
            "9",
            "--ignore-eos",
            "--out",
            "o",
            "--engine-label",
            "vllm",
            "--max-users",
            "16",
            "--ttft-metric",
            "p99",
            "--reset-cache",
            "--request-rate",
            "0.5",
            "--arrival",
            "constant",
            "--max-working-set-tokens",
            "100000",
        ]);
        let run_time = [
            "--url",
            "http://a:1",
            "--url",
            "http://b:2",
            "--traces",
            "t1",
            "--traces",
            "t2",
            "--out",
            "o",
        ];
        assert_eq!(round_trip(&w, &run_time), w);
        let full = w.full_argv().expect("a command line");
        assert_eq!(parse(&full).expect("parses"), w);
    }

    #[test]
    fn defaults_and_run_time_flags_stay_off_the_command_line() {
        let w = parsed(&["replay", "--traces", "t", "--out", "o", "--users", "3"]);
        assert_eq!(
            w.argv().expect("argv"),
            [
                "replay",
                "--api",
                "completions",
                "--format",
                "auto",
                "--users",
                "3",
                "--duration",
                "0"
            ]
        );
        let full = w.full_argv().expect("argv");
        assert!(full.windows(2).any(|p| p == ["--traces", "t"]), "{full:?}");
        assert!(full.windows(2).any(|p| p == ["--out", "o"]), "{full:?}");
    }

    #[test]
    fn every_cell_tester_comes_back_the_same() {
        let run_time = ["--output-dir", "out"];
        for w in [
            parsed(&[
                "test",
                "single-prompt",
                "--output-dir",
                "out",
                "--api",
                "chat",
                "--context-sizes",
                "1000",
                "--context-sizes",
                "2000",
                "--num-iterations",
                "2",
            ]),
            parsed(&[
                "test",
                "cache-rate",
                "--output-dir",
                "out",
                "--context-sizes",
                "4000",
                "--working-set-size",
                "80000",
                "--cache-hit-rates",
                "0",
                "--cache-hit-rates",
                "50",
                "--mode",
                "fixed",
                "--reinit-strategy",
                "per-cache-rate",
                "--ttft-metric",
                "max",
                "--random-working-set-selection",
                "--max-ttft",
                "1.5",
            ]),
            parsed(&[
                "test",
                "working-set",
                "--output-dir",
                "out",
                "--context-sizes",
                "8000",
                "--min-working-set-size",
                "10000",
                "--max-working-set-size",
                "90000",
                "--scale",
                "geometric",
                "--kv-bytes-per-token",
                "131072",
            ]),
        ] {
            assert_eq!(round_trip(&w, &run_time), w);
            assert!(w.tester_kind().is_some());
        }
    }

    #[test]
    fn switches_are_the_flags_without_a_value() {
        let replay = switches(&["replay"]);
        assert!(replay.iter().any(|s| s == "recycle"), "{replay:?}");
        assert!(replay.iter().any(|s| s == "reset_cache"), "{replay:?}");
        assert!(!replay.iter().any(|s| s == "users"), "{replay:?}");
        let cache_rate = switches(&["test", "cache-rate"]);
        assert!(
            cache_rate
                .iter()
                .any(|s| s == "random_working_set_selection"),
            "{cache_rate:?}"
        );
        assert!(switches(&["nonsense"]).is_empty());
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
}
