//! InferenceX master configs (`configs/nvidia-master.yaml`, `configs/amd-master.yaml` with
//! `configs/runners.yaml`, InferenceX commit 843c6254f) read as they are, and expanded into the
//! same job list as InferenceX's `generate_sweep_configs.py full-sweep --no-evals`: the same
//! entries in the same order, with the same keys and values, printed as Python prints them.
//!
//! - [`yaml11`]: the files read as PyYAML reads them, with every node's position;
//! - [`config`] and [`runners`]: the typed configs, checked by the generator's validation rules;
//! - [`filters`]: the `full-sweep` filters and the concurrency lists they shape;
//! - `expand` and `dram`: the job entries, fixed-seq-len and agentic, single- and multi-node;
//! - [`pyjson`]: `json.dumps` output.
//!
//! Deliberate differences: where pydantic would coerce (`tp: "4"`, `dp-attn: 1`) we refuse, and
//! YAML merge keys and timestamps are refused; the generator never sees those in its configs.

mod check;
pub mod config;
mod dram;
mod expand;
pub mod filters;
pub mod pyjson;
pub mod runners;
pub mod yaml11;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use expand::AGENTIC_DURATION_S;
pub use filters::Filters;
use yaml11::{Document, Value};

/// The file parsed as a master config, or `None` when it has another shape (or is not YAML
/// that PyYAML would read, in which case the other readers report the problem).
pub fn detect(path: &Path) -> Option<Document> {
    let text = std::fs::read_to_string(path).ok()?;
    if !text.contains("scenarios") {
        return None;
    }
    Document::parse(path, &text).ok().filter(config::is_master)
}

/// Reads master configs and the runner config, and expands the job list.
pub fn generate(configs: &[PathBuf], filters: &Filters) -> Result<Vec<Value>> {
    let docs = configs
        .iter()
        .map(|p| Document::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    generate_docs(&docs, filters)
}

/// [`generate`] on already parsed master configs.
pub(crate) fn generate_docs(docs: &[Document], filters: &Filters) -> Result<Vec<Value>> {
    let entries = config::load(docs)?;
    let runner_doc = Document::read(&filters.runner_config).with_context(|| {
        format!(
            "cannot read the runner config (set it with --runner-config) {}",
            filters.runner_config.display()
        )
    })?;
    let runners = runners::RunnerConfig::load(&runner_doc)?;
    expand::generate(&entries, &runners, filters)
}
