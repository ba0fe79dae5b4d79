//! The AgentX replay scenario's flags (`--scenario agentx` and one flag per rule), and the rules
//! they resolve to.
//!
//! InferenceX replays its agentic traces with AIPerf's `inferencex-agentx-mvp` scenario
//! (InferenceX `benchmarks/benchmark_lib.sh`, `build_replay_cmd`; AIPerf 0.13.0
//! `common/scenario/inferencex_agentx_mvp.py`). `--scenario agentx` turns the same rules on with
//! the values InferenceX runs; each rule is also a flag of its own, which wins over the scenario.
//! [`crate::run::replay`] enforces them (`agentx`, `idle_gap`).

use serde::{Deserialize, Serialize};

/// A named set of replay rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// InferenceX's AgentX replay (AIPerf `--scenario inferencex-agentx-mvp` as
    /// `build_replay_cmd` runs it).
    Agentx,
}

/// What a cache bust changes so that a run finds nothing cached by an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum CacheBust {
    /// Nothing: the same seed sends the same prompts, run after run.
    None,
    /// Every play's first-turn prefix gets a per-run marker (AIPerf `--cache-bust
    /// first_turn_prefix`, which the AgentX scenario requires): a rerun against a warm server
    /// finds none of the previous run's blocks, and a tree's subagents still share its prefix.
    FirstTurnPrefix,
}

/// The AgentX rules' flags (`kvsweep replay --help` groups them under "AgentX scenario").
/// Unset flags take the scenario's value, or leave the rule off without a scenario.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct AgentxArgs {
    /// Replay rules by name: `agentx` sets every rule below to InferenceX's value.
    #[arg(long, value_enum, help_heading = "AgentX scenario")]
    pub scenario: Option<Scenario>,
    /// Each lane starts its trace at a turn drawn from at least this share of its turns, with
    /// the cache primed up to there [agentx: 0.25].
    #[arg(long, help_heading = "AgentX scenario")]
    trajectory_start_min_ratio: Option<f64>,
    /// ... and at most this share [agentx: 0.75].
    #[arg(long, help_heading = "AgentX scenario")]
    trajectory_start_max_ratio: Option<f64>,
    /// One-token requests each lane sends past its start turn, without waits, before profiling
    /// starts [agentx: 10].
    #[arg(long, help_heading = "AgentX scenario")]
    pub warmup_requests_per_lane: Option<u32>,
    /// Longest time, seconds, the whole replay may sit with nothing in flight: every pending
    /// wait is moved earlier by the excess [agentx: 10].
    #[arg(long, help_heading = "AgentX scenario")]
    system_idle_gap_cap: Option<f64>,
    /// Longest wait, seconds, inside one trajectory tree (its turns and subagents)
    /// [agentx: 300].
    #[arg(long, help_heading = "AgentX scenario")]
    trace_idle_gap_cap: Option<f64>,
    #[arg(long, value_enum, help_heading = "AgentX scenario")]
    pub(crate) cache_bust: Option<CacheBust>,
    /// Stop the run (failed) once more than this share of profiled requests failed, counted
    /// from max(users, 10) requests on [agentx: 0.10].
    #[arg(long, help_heading = "AgentX scenario")]
    pub(crate) failed_request_threshold: Option<f64>,
}

/// The rules a replay runs by, once the scenario's values and the explicit flags are merged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// The start turn's share of a trace's turns, `[min, max]`; `None`: from the first turn.
    pub start_ratio: Option<(f64, f64)>,
    pub warmup_requests_per_lane: u32,
    pub system_idle_gap_cap_s: Option<f64>,
    pub trace_idle_gap_cap_s: Option<f64>,
    pub(crate) cache_bust: CacheBust,
    pub(crate) failed_request_threshold: Option<f64>,
    /// Lanes take a new trace when theirs ends (AIPerf recycles a lane once its tree drains).
    pub recycle: bool,
    /// Requests ask for exactly the trace's output length (the scenario's
    /// `require_ignore_eos`).
    pub ignore_eos: bool,
    /// A parent's turn waits for the subagents that started before it to finish (AIPerf gates
    /// a parent's join turn on its children).
    pub(crate) join_subagents: bool,
}

impl AgentxArgs {
    /// The rules: an explicit flag, else the scenario's value (InferenceX's, with its source),
    /// else off.
    pub fn rules(&self) -> Rules {
        let agentx = self.scenario == Some(Scenario::Agentx);
        let by_scenario = |v: f64| agentx.then_some(v);
        let lo = self
            .trajectory_start_min_ratio
            // build_replay_cmd: `--trajectory-start-min-ratio 0.25`.
            .or(by_scenario(0.25));
        let hi = self
            .trajectory_start_max_ratio
            // build_replay_cmd: `--trajectory-start-max-ratio 0.75`.
            .or(by_scenario(0.75));
        let start_ratio = match (lo, hi) {
            (None, None) => None,
            (lo, hi) => {
                let lo = lo.unwrap_or(0.0).clamp(0.0, 1.0);
                Some((lo, hi.unwrap_or(1.0).clamp(lo, 1.0)))
            }
        };
        Rules {
            start_ratio,
            warmup_requests_per_lane: self
                .warmup_requests_per_lane
                // benchmark_lib.sh: AIPERF_WARMUP_REQUESTS_PER_LANE defaults to 10.
                .unwrap_or(if agentx { 10 } else { 0 }),
            // inferencex_agentx_mvp.py: system_idle_gap_cap_seconds=10.0.
            system_idle_gap_cap_s: self.system_idle_gap_cap.or(by_scenario(10.0)),
            // benchmark_lib.sh: AIPERF_TRACE_IDLE_GAP_CAP_SECONDS defaults to 300.
            trace_idle_gap_cap_s: self.trace_idle_gap_cap.or(by_scenario(300.0)),
            // inferencex_agentx_mvp.py: require_cache_bust=FIRST_TURN_PREFIX.
            cache_bust: self.cache_bust.unwrap_or(if agentx {
                CacheBust::FirstTurnPrefix
            } else {
                CacheBust::None
            }),
            // benchmark_lib.sh: AIPERF_FAILED_REQUEST_THRESHOLD defaults to 0.10.
            failed_request_threshold: self.failed_request_threshold.or(by_scenario(0.10)),
            recycle: agentx,
            ignore_eos: agentx,
            join_subagents: agentx,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::base::workload::replay::parse;

    use super::*;

    #[test]
    fn without_a_scenario_every_rule_is_off() {
        let r = parse(&[]).expect("parses").agentx.rules();
        assert_eq!(
            r,
            Rules {
                start_ratio: None,
                warmup_requests_per_lane: 0,
                system_idle_gap_cap_s: None,
                trace_idle_gap_cap_s: None,
                cache_bust: CacheBust::None,
                failed_request_threshold: None,
                recycle: false,
                ignore_eos: false,
                join_subagents: false,
            }
        );
    }

    #[test]
    fn agentx_sets_inferencex_values() {
        let r = parse(&["--scenario", "agentx"])
            .expect("parses")
            .agentx
            .rules();
        assert_eq!(r.start_ratio, Some((0.25, 0.75)));
        assert_eq!(r.warmup_requests_per_lane, 10);
        assert_eq!(r.system_idle_gap_cap_s, Some(10.0));
        assert_eq!(r.trace_idle_gap_cap_s, Some(300.0));
        assert_eq!(r.cache_bust, CacheBust::FirstTurnPrefix);
        assert_eq!(r.failed_request_threshold, Some(0.10));
        assert!(r.recycle && r.ignore_eos && r.join_subagents);
    }

    #[test]
    fn an_explicit_flag_wins_over_the_scenario() {
        let r = parse(&[
            "--scenario",
            "agentx",
            "--warmup-requests-per-lane",
            "0",
            "--cache-bust",
            "none",
            "--trajectory-start-max-ratio",
            "0.5",
        ])
        .expect("parses")
        .agentx
        .rules();
        assert_eq!(r.warmup_requests_per_lane, 0);
        assert_eq!(r.cache_bust, CacheBust::None);
        assert_eq!(r.start_ratio, Some((0.25, 0.5)));
    }

    #[test]
    fn a_start_range_is_kept_within_zero_and_one_and_ordered() {
        let r = parse(&[
            "--trajectory-start-min-ratio",
            "0.8",
            "--trajectory-start-max-ratio",
            "0.3",
        ])
        .expect("parses")
        .agentx
        .rules();
        assert_eq!(r.start_ratio, Some((0.8, 0.8)));
        let r = parse(&["--trajectory-start-min-ratio", "1.7"])
            .expect("parses")
            .agentx
            .rules();
        assert_eq!(r.start_ratio, Some((1.0, 1.0)));
    }
}
