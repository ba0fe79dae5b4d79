//! The native sweep spec: what to run as well as the axes to sweep. Documented in `sweeps/README.md`.
//!
//! Here are the spec's serde shape and [`load`], which checks the top-level fields and puts the
//! sweep together; the children do the two halves of the work:
//! - [`settings`]: the fields every cell shares (model, traces, budget, workload, recipe,
//!   economics), resolved and checked;
//! - [`cells`]: the cell matrix (axes, `per_tp`, `exclude`, `include`) and each cell's check
//!   against its runner.

mod cells;
mod settings;

use indexmap::IndexMap;
use serde::Deserialize;

use super::{
    Cell, DEFAULT_DURATION_S, LoadOptions, Offload, OffloadBackend, Settings, Shape, Sweep,
    TraceFormat, check_not_empty, check_unique, find_runner,
};
use crate::base::kinds::EngineKind;
use crate::base::model::KvDtype;
use crate::base::yaml::{SpecError, YamlDoc};
use cells::{add_includes, apply_excludes, check_cell, expand_axes};
use settings::{
    checked_economics, resolve_budget, resolve_model, resolve_traces, resolve_workload, tp_recipes,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeSpec {
    name: String,
    model: ModelSpec,
    engine: EngineKind,
    image: Option<String>,
    precision: Option<String>,
    runners: Vec<String>,
    duration_s: Option<u64>,
    traces: Option<TracesSpec>,
    #[serde(default)]
    replay: IndexMap<String, serde_norway::Value>,
    /// A synthetic cache test to run in each cell instead of a trace replay.
    tester: Option<IndexMap<String, serde_norway::Value>>,
    /// Appended to every cell's engine command, after the runner's flags.
    #[serde(default)]
    engine_args: Vec<String>,
    /// A recorded InferenceX launch (its job script's name, `dsv4_fp4_b200_vllm_mtp`) every
    /// cell starts instead of the runner's engine flags; the runner still adds its offload flags.
    recipe: Option<String>,
    offload_gb: Option<f64>,
    offload_dram_fraction: Option<f64>,
    #[serde(default)]
    offload_backend: OffloadBackend,
    /// Price and power figures in place of the runners' (README.md, "Cost, energy and cache
    /// tiers").
    economics: Option<crate::base::economics::SpecEconomics>,
    tp: Vec<u32>,
    ep: Option<Vec<u32>>,
    users: Vec<u32>,
    offload: Option<Vec<Offload>>,
    #[serde(default)]
    per_tp: IndexMap<String, TpOverride>,
    #[serde(default)]
    exclude: Vec<CellFilter>,
    #[serde(default)]
    include: Vec<ExtraCell>,
    /// Overrides of the thresholds that make a cell a trustworthy point.
    #[serde(default)]
    validity: crate::base::validity::ValidityOverrides,
    /// How many times each cell runs, each with a fresh engine (and so an empty cache).
    repeats: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelSpec {
    name: String,
    /// A local model directory (`~/` is the home directory; otherwise relative to the spec).
    path: Option<String>,
    max_len: Option<u32>,
    preset: Option<String>,
    layers: Option<u32>,
    kv_heads: Option<u32>,
    head_dim: Option<u32>,
    kv_lora_rank: Option<u32>,
    rope_dim: Option<u32>,
    dtype: Option<KvDtype>,
}

/// `{path}` for a file or directory, or `{url, sha256, path}` for a download, where `path` is
/// then a file or folder inside the archive.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TracesSpec {
    path: Option<String>,
    url: Option<String>,
    sha256: Option<String>,
    #[serde(default)]
    format: TraceFormat,
}

/// Per-tp axis values, as in the InferenceX shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TpOverride {
    users: Option<Vec<u32>>,
    offload: Option<Vec<Offload>>,
    ep: Option<u32>,
}

/// A partial cell: every given field must match for the cell to be dropped.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CellFilter {
    runner: Option<String>,
    tp: Option<u32>,
    ep: Option<u32>,
    users: Option<u32>,
    offload: Option<Offload>,
}

/// An extra cell; without `runner` it is added for every runner of the spec.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtraCell {
    runner: Option<String>,
    tp: u32,
    #[serde(default)]
    ep: u32,
    users: u32,
    offload: Offload,
}

pub(super) fn load(doc: &YamlDoc, opts: LoadOptions<'_>) -> Result<Sweep, SpecError> {
    let spec: NativeSpec = doc.parse()?;
    if spec.name.is_empty()
        || !spec
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(doc.error(
            "name",
            "must be non-empty and use only letters, digits, `.`, `_` and `-`: it names artifacts",
        ));
    }
    let model = resolve_model(doc, &spec.model)?;
    let offload_budget = resolve_budget(doc, &spec)?;
    let traces = spec
        .traces
        .as_ref()
        .map(|t| resolve_traces(doc, t))
        .transpose()?;
    let workload = resolve_workload(doc, &spec)?;
    let validity = spec
        .validity
        .resolve()
        .map_err(|field| doc.error(&format!("validity.{field}"), "must be a number at least 0"))?;
    if spec.repeats == Some(0) {
        return Err(doc.error("repeats", "must be at least 1"));
    }
    if spec.duration_s == Some(0) {
        return Err(doc.error("duration_s", "must be at least 1 second"));
    }

    check_not_empty(doc, "runners", &spec.runners)?;
    check_unique(doc, "runners", &spec.runners)?;
    for (i, name) in spec.runners.iter().enumerate() {
        find_runner(doc, opts.runners, name, &format!("runners[{i}]"))?;
    }
    if let Some(only) = opts.runner
        && !spec.runners.iter().any(|r| r == only)
    {
        let mut e = doc.error(
            "runners",
            format!(
                "runner `{only}` (from --runner) is not one of the spec's runners: {}",
                spec.runners.join(", ")
            ),
        );
        e.line = 0;
        return Err(e);
    }

    let mut placed = expand_axes(doc, &spec)?;
    apply_excludes(doc, &spec, &mut placed)?;
    add_includes(doc, &spec, &mut placed)?;

    for p in &placed {
        check_cell(doc, &spec, opts.runners, p)?;
    }
    let cells: Vec<Cell> = placed
        .into_iter()
        .map(|p| p.cell)
        .filter(|c| opts.runner.is_none() || c.runner.as_deref() == opts.runner)
        .collect();

    let tp_recipes = match &spec.recipe {
        Some(name) => tp_recipes(doc, &spec, name, &cells)?,
        None => Vec::new(),
    };
    let matrix_loc = doc.locate("tp");
    Ok(Sweep {
        path: doc.path().to_path_buf(),
        shape: Shape::Native,
        settings: Settings {
            name: spec.name.clone(),
            model: Some(model),
            engine: spec.engine,
            image: spec.image.clone(),
            precision: spec.precision.clone(),
            duration_s: spec.duration_s.unwrap_or(DEFAULT_DURATION_S),
            traces,
            missing_traces_hint: None,
            workload,
            engine_args: spec.engine_args.clone(),
            recipe: None,
            tp_recipes,
            offload_budget,
            offload_backend: spec.offload_backend,
            validity,
            repeats: spec.repeats.unwrap_or(1),
            economics: checked_economics(doc, spec.economics.as_ref())?,
        },
        cells,
        matrix_field: "tp".to_owned(),
        matrix_location: (matrix_loc.line, matrix_loc.column),
    })
}
