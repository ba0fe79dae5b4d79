//! kvsweep: benchmark LLM inference servers on agentic multi-turn workloads, with and without
//! KV-cache offload, across a sweep of configurations.
//!
//! The data flows spec → matrix → render → engine → replay → metrics → collect → pareto/plot →
//! report; each stage is a module and they exchange plain types. The one file format between
//! stages is the cell artifact directory ([`artifact`]).
//!
//! Stages import each other as a tree (the `module_graph` test fails on any cycle); what several
//! of them need lives below them all: the words a sweep is made of ([`kinds`]), the OpenAI client
//! and preflight ([`openai`]), the seeded RNG ([`rng`]), hashing ([`hash`]), statistics
//! ([`stats`]), the KV-capacity formula ([`capacity`]), GPU prices and power ([`economics`]) and the shutdown signal ([`shutdown`]).

pub mod aiperf;
pub mod archive;
pub mod artifact;
pub mod calibrate;
pub mod capacity;
pub mod cell;
pub mod collect;
pub mod economics;
pub mod engine;
pub mod fuzz;
pub mod gate;
pub mod github;
pub mod hash;
pub mod history;
pub mod kinds;
pub mod kvsize;
pub mod matrix_cell;
pub mod metrics;
pub mod model;
#[cfg(test)]
mod module_graph;
pub mod numpy_random;
pub mod openai;
pub mod oracle;
pub mod pareto;
pub mod paths;
pub mod plot;
pub mod predict;
pub mod recipe;
pub mod render;
pub mod repeats;
pub mod replay;
pub mod report;
pub mod rng;
pub mod runner;
pub mod shutdown;
pub mod sim;
pub mod slurm;
pub mod spec;
pub mod stats;
pub mod student_t;
pub mod sweep;
pub mod tally;
pub mod testers;
pub mod tokenizer;
pub mod trace;
pub mod trace_cache;
pub mod validity;
pub mod workload;
pub mod yaml;

/// Version and the git commit the binary was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("KVSWEEP_GIT_COMMIT"),
    ")"
);
