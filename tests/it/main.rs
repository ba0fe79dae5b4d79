//! The integration tests, in one binary: one link step instead of one per file, and the helpers
//! in `common` compiled once for all of them.
//!
//! `cargo test` runs the fast tier, which needs nothing but this crate, `bash` and `kill`.
//! Tests that need an external tool (shellcheck, actionlint, Python with PyYAML, curl, Chromium,
//! AIPerf, llama-server, vLLM, a running Slurm) are ignored unless the `external-tools` feature is
//! on; `scripts/test.sh` installs the tools and turns it on. A new test file is a module here.

mod common;

mod agentx;
mod agentx_metrics;
mod agentx_results;
mod aiperf_collect;
mod artifacts;
mod cli;
mod collect;
mod cost_energy;
mod defaults;
mod fuzz_regressions;
mod history;
mod inferencex_master;
mod inferencex_recipes;
mod llama_server;
mod matrix;
mod metrics;
mod metrics_vllm;
mod modelled_time;
mod oracle;
mod predict;
mod render;
mod render_agentx;
mod repeats;
mod replay;
mod replay_controls;
mod replay_preflight;
mod report_browser;
mod report_story;
mod run_cell;
mod runner_script;
mod sim_server;
mod sim_trace;
mod slurm;
mod soak;
mod spec_errors;
mod testers;
mod trace_bailian;
mod trace_tools;
mod traces_fetch;
mod validity;
mod vllm;
mod vllm_prediction;
mod workflows;
