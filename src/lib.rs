//! kvsweep: benchmark LLM inference servers on agentic multi-turn workloads, with and without
//! KV-cache offload, across a sweep of configurations.
//!
//! The crate is folders by layer, each importing only the layers below it (the `module_graph`
//! test fails on an import upward, and on any cycle between modules):
//!
//! - [`base`]: the shared vocabulary (engine kinds, offload modes, runners, the workload as
//!   planned, RNG, statistics) and small utilities;
//! - [`data`]: the files between stages: traces, the cell artifact directory and the tally of
//!   its figures, AIPerf's exports;
//! - [`plan`]: spec → matrix → cell plan → runner script, with the engine's command line;
//! - [`run`]: the replay engine, testers, metrics recorder, simulator, run-cell, Slurm, GitHub;
//! - [`results`]: artifacts → collect → Pareto, report, history and gate, and the oracle;
//! - [`cli`]: commands that drive several layers (sweep, predict, calibrate).
//!
//! A request goes trace ([`data::trace`]) → schedule and send ([`run::replay`]) → `requests.csv`
//! ([`data::artifact`]) → a cell's figures ([`results::collect`]) → frontier and report
//! ([`results::pareto`], [`results::report`]).

pub mod base;
pub mod cli;
pub mod data;
pub mod fuzz;
#[cfg(test)]
mod module_graph;
pub mod plan;
pub mod results;
pub mod run;

/// Version and the git commit the binary was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("KVSWEEP_GIT_COMMIT"),
    ")"
);
