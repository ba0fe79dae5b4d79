//! The native sweep spec: what to run as well as the axes to sweep. Documented in `sweeps/README.md`.

use std::path::Path;

use indexmap::IndexMap;
use serde::Deserialize;

use super::options::{self, SpecWorkload};
use super::{
    Cell, CellFields, DEFAULT_DURATION_S, LoadOptions, Model, Offload, OffloadBackend,
    OffloadBudget, Settings, Shape, Sweep, TraceFormat, TraceSource, Traces, check_not_empty,
    check_parallelism, check_unique, find_runner, parse_tp_key,
};
use crate::base::kinds::EngineKind;
use crate::base::model::{self, Attention, Geometry, KvDtype};
use crate::base::paths::expand_home;
use crate::base::runner::RunnerSet;
use crate::base::yaml::{SpecError, YamlDoc};
use crate::data::trace_cache::RemoteTraces;

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

/// A cell together with the spec fields it came from, for error locations.
struct Placed {
    cell: Cell,
    runner_field: String,
    tp_field: String,
    ep_field: String,
    offload_field: String,
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

/// The launch of recipe `name` for each TP the cells use, checked against the spec's engine and
/// image.
fn tp_recipes(
    doc: &YamlDoc,
    spec: &NativeSpec,
    name: &str,
    cells: &[Cell],
) -> Result<Vec<(u32, crate::base::recipe::Recipe)>, SpecError> {
    let mut tps: Vec<u32> = cells.iter().map(|c| c.tp).collect();
    tps.sort_unstable();
    tps.dedup();
    let mut out = Vec::new();
    for tp in tps {
        let recipe = crate::base::recipe::for_tp(name, tp)
            .map_err(|e| doc.error("recipe", format!("{e:#}")))?;
        let program = match spec.engine {
            EngineKind::Vllm => "vllm",
            EngineKind::Sglang => "python3",
            other => {
                return Err(doc.error(
                    "recipe",
                    format!("recipes are InferenceX's vLLM and SGLang launches; engine is {other}"),
                ));
            }
        };
        if recipe.program != program {
            return Err(doc.error(
                "recipe",
                format!(
                    "recipe `{name}` starts `{}`, not engine {} (`{program}`)",
                    recipe.program, spec.engine
                ),
            ));
        }
        out.push((tp, recipe));
    }
    Ok(out)
}

/// The spec's `economics:`, every figure a positive number.
fn checked_economics(
    doc: &YamlDoc,
    e: Option<&crate::base::economics::SpecEconomics>,
) -> Result<Option<crate::base::economics::SpecEconomics>, SpecError> {
    if let Some((field, value)) = e.and_then(crate::base::economics::SpecEconomics::invalid_figure)
    {
        return Err(doc.error(
            &format!("economics.{field}"),
            format!("{value} must be a positive number"),
        ));
    }
    Ok(e.cloned())
}

/// The `traces:` mapping: a path (relative to the spec file) or a URL to download.
fn resolve_traces(doc: &YamlDoc, t: &TracesSpec) -> Result<Traces, SpecError> {
    let source = match (&t.url, &t.path) {
        (Some(url), inner) => {
            let remote = RemoteTraces::new(url, t.sha256.as_deref(), inner.as_deref())
                .map_err(|e| doc.error(&format!("traces.{}", e.field.name()), e.message))?;
            TraceSource::Url(remote)
        }
        (None, _) if t.sha256.is_some() => {
            return Err(doc.error(
                "traces.sha256",
                "a sha256 checks a download: give the traces' `url:` with it",
            ));
        }
        (None, Some(path)) if !path.is_empty() => {
            let dir = doc.path().parent().unwrap_or(Path::new("."));
            TraceSource::Path(dir.join(path))
        }
        (None, _) => {
            return Err(doc.error(
                "traces",
                "give `path:` (a trace file or directory) or `url:` (traces to download into the trace cache)",
            ));
        }
    };
    Ok(Traces {
        source,
        format: t.format,
    })
}

fn resolve_model(doc: &YamlDoc, m: &ModelSpec) -> Result<Model, SpecError> {
    if m.name.trim().is_empty() {
        return Err(doc.error("model.name", "must not be empty"));
    }
    let hand_given = [m.layers, m.kv_heads, m.head_dim, m.kv_lora_rank, m.rope_dim]
        .iter()
        .any(Option::is_some);
    let geometry = match (&m.preset, hand_given) {
        (Some(_), true) => {
            return Err(doc.error(
                "model.preset",
                "give either a preset or the KV geometry (layers, kv_heads, head_dim), not both",
            ));
        }
        (Some(name), false) => {
            let preset = model::preset(name).ok_or_else(|| {
                doc.error(
                    "model.preset",
                    format!(
                        "unknown model preset `{name}`; known presets: {}",
                        model::preset_names().join(", ")
                    ),
                )
            })?;
            let mut g = preset.geometry;
            if let Some(dtype) = m.dtype {
                g.dtype = dtype;
            }
            g
        }
        (None, true) => hand_geometry(doc, m)?,
        (None, false) => {
            return Err(doc.error(
                "model",
                "needs a `preset` or the KV geometry (layers, kv_heads, head_dim, dtype)",
            ));
        }
    };
    let path = match m.path.as_deref() {
        Some("") => return Err(doc.error("model.path", "must not be empty")),
        Some(p) => {
            let dir = doc.path().parent().unwrap_or(Path::new("."));
            Some(dir.join(expand_home(p)))
        }
        None => None,
    };
    if m.max_len == Some(0) {
        return Err(doc.error("model.max_len", "must be at least 1 token"));
    }
    Ok(Model {
        name: m.name.clone(),
        path,
        max_len: m.max_len,
        preset: m.preset.clone(),
        geometry: Some(geometry),
    })
}

fn hand_geometry(doc: &YamlDoc, m: &ModelSpec) -> Result<Geometry, SpecError> {
    let layers = m
        .layers
        .filter(|l| *l > 0)
        .ok_or_else(|| doc.error("model.layers", "the KV geometry needs layers >= 1"))?;
    let attention = match (m.kv_heads, m.head_dim, m.kv_lora_rank, m.rope_dim) {
        (Some(kv_heads), Some(head_dim), None, None) if kv_heads > 0 && head_dim > 0 => {
            Attention::Gqa { kv_heads, head_dim }
        }
        (None, None, Some(kv_lora_rank), Some(rope_dim)) if kv_lora_rank > 0 => Attention::Mla {
            kv_lora_rank,
            rope_dim,
        },
        _ => {
            return Err(doc.error(
                "model",
                "the KV geometry needs kv_heads and head_dim (GQA) or kv_lora_rank and rope_dim (MLA), all positive",
            ));
        }
    };
    Ok(Geometry {
        layers,
        attention,
        dtype: m.dtype.unwrap_or(KvDtype::Bf16),
        params_b: 0,
        active_params_b: 0,
        hidden: 0,
    })
}

fn resolve_budget(doc: &YamlDoc, spec: &NativeSpec) -> Result<Option<OffloadBudget>, SpecError> {
    match (spec.offload_gb, spec.offload_dram_fraction) {
        (Some(_), Some(_)) => Err(doc.error(
            "offload_dram_fraction",
            "give either offload_gb or offload_dram_fraction, not both",
        )),
        (Some(gb), None) if gb > 0.0 && gb.is_finite() => Ok(Some(OffloadBudget::Gib(gb))),
        (Some(_), None) => Err(doc.error("offload_gb", "must be a positive number of GiB")),
        (None, Some(f)) if f > 0.0 && f <= 1.0 => Ok(Some(OffloadBudget::DramFraction(f))),
        (None, Some(_)) => Err(doc.error(
            "offload_dram_fraction",
            "must be a fraction of host DRAM in (0, 1]",
        )),
        (None, None) => Ok(None),
    }
}

/// The cells' workload: a replay of `traces:` with the `replay:` options, or the `tester:`
/// (its `kind` and the rest as `kvsweep test KIND` options), never neither or both.
fn resolve_workload(doc: &YamlDoc, spec: &NativeSpec) -> Result<SpecWorkload, SpecError> {
    match (&spec.tester, &spec.traces) {
        (None, None) => Err(doc.error(
            "name",
            "give `traces:` (a trace replay) or `tester:` (a synthetic cache test) for the cells to run",
        )),
        (Some(_), Some(_)) => Err(doc.error(
            "tester",
            "a cell runs a trace replay or a tester: remove `traces:` or `tester:`",
        )),
        (None, Some(_)) => options::replay(doc, &spec.replay),
        (Some(map), None) => options::tester(doc, map),
    }
}

fn expand_axes(doc: &YamlDoc, spec: &NativeSpec) -> Result<Vec<Placed>, SpecError> {
    check_not_empty(doc, "tp", &spec.tp)?;
    check_unique(doc, "tp", &spec.tp)?;
    check_not_empty(doc, "users", &spec.users)?;
    check_unique(doc, "users", &spec.users)?;
    let default_offload = vec![Offload::On, Offload::Off];
    let offloads = spec.offload.as_ref().unwrap_or(&default_offload);
    check_not_empty(doc, "offload", offloads)?;
    check_unique(doc, "offload", offloads)?;
    let default_ep = vec![0];
    let eps = spec.ep.as_ref().unwrap_or(&default_ep);
    check_not_empty(doc, "ep", eps)?;
    check_unique(doc, "ep", eps)?;
    for (i, u) in spec.users.iter().enumerate() {
        if *u == 0 {
            return Err(doc.error(&format!("users[{i}]"), "users must be at least 1"));
        }
    }

    for key in spec.per_tp.keys() {
        let field = format!("per_tp.{key}");
        let tp = parse_tp_key(doc, &field, key)?;
        if !spec.tp.contains(&tp) {
            return Err(doc.error(&field, format!("tp {tp} is not in the tp axis")));
        }
    }

    let mut placed = Vec::new();
    for (ri, runner) in spec.runners.iter().enumerate() {
        for (ti, &tp) in spec.tp.iter().enumerate() {
            let key = format!("tp{tp}");
            let over = spec.per_tp.get(&key);
            let base = format!("per_tp.{key}");
            let (users, users_field) = match over.and_then(|o| o.users.as_ref()) {
                Some(u) => (u, format!("{base}.users")),
                None => (&spec.users, "users".to_owned()),
            };
            let (offs, offload_field) = match over.and_then(|o| o.offload.as_ref()) {
                Some(o) => (o, format!("{base}.offload")),
                None => (offloads, "offload".to_owned()),
            };
            let ep_override = over.and_then(|o| o.ep).map(|ep| vec![ep]);
            let (eps_here, ep_field) = match &ep_override {
                Some(e) => (e, format!("{base}.ep")),
                None => (eps, "ep".to_owned()),
            };
            if over.is_some() {
                check_not_empty(doc, &users_field, users)?;
                check_unique(doc, &users_field, users)?;
                check_not_empty(doc, &offload_field, offs)?;
                check_unique(doc, &offload_field, offs)?;
            }
            for (ei, &ep) in eps_here.iter().enumerate() {
                for &u in users {
                    for (oi, &offload) in offs.iter().enumerate() {
                        let cell = Cell {
                            name: cell_name(&spec.name, runner, tp, ep, u, offload),
                            runner: Some(runner.clone()),
                            tp,
                            ep,
                            users: u,
                            offload,
                        };
                        placed.push(Placed {
                            cell,
                            runner_field: format!("runners[{ri}]"),
                            tp_field: if over.is_some() {
                                base.clone()
                            } else {
                                format!("tp[{ti}]")
                            },
                            ep_field: if ep_override.is_some() {
                                ep_field.clone()
                            } else {
                                format!("{ep_field}[{ei}]")
                            },
                            offload_field: format!("{offload_field}[{oi}]"),
                        });
                    }
                }
            }
        }
    }
    Ok(placed)
}

/// The documented native cell name: `{spec}_{runner}_tp{tp}[_ep{ep}]_users{users}_offload{mode}`.
pub(super) fn cell_name(
    spec: &str,
    runner: &str,
    tp: u32,
    ep: u32,
    users: u32,
    offload: Offload,
) -> String {
    let ep = if ep > 0 {
        format!("_ep{ep}")
    } else {
        String::new()
    };
    format!("{spec}_{runner}_tp{tp}{ep}_users{users}_offload{offload}")
}

fn apply_excludes(
    doc: &YamlDoc,
    spec: &NativeSpec,
    placed: &mut Vec<Placed>,
) -> Result<(), SpecError> {
    for (i, f) in spec.exclude.iter().enumerate() {
        let field = format!("exclude[{i}]");
        if f.runner.is_none()
            && f.tp.is_none()
            && f.ep.is_none()
            && f.users.is_none()
            && f.offload.is_none()
        {
            return Err(doc.error(
                &field,
                "an exclude entry needs at least one of runner, tp, ep, users, offload",
            ));
        }
        let matches = |c: &Cell| {
            f.runner
                .as_ref()
                .is_none_or(|r| c.runner.as_ref() == Some(r))
                && f.tp.is_none_or(|v| c.tp == v)
                && f.ep.is_none_or(|v| c.ep == v)
                && f.users.is_none_or(|v| c.users == v)
                && f.offload.is_none_or(|v| c.offload == v)
        };
        let before = placed.len();
        placed.retain(|p| !matches(&p.cell));
        if placed.len() == before {
            return Err(doc.error(&field, "matches no cell: check it for a typo"));
        }
    }
    Ok(())
}

fn add_includes(
    doc: &YamlDoc,
    spec: &NativeSpec,
    placed: &mut Vec<Placed>,
) -> Result<(), SpecError> {
    for (i, extra) in spec.include.iter().enumerate() {
        let field = format!("include[{i}]");
        if extra.users == 0 {
            return Err(doc.error(&format!("{field}.users"), "users must be at least 1"));
        }
        let runners: Vec<&String> = match &extra.runner {
            Some(r) => {
                if !spec.runners.contains(r) {
                    return Err(doc.error(
                        &format!("{field}.runner"),
                        format!(
                            "runner `{r}` is not one of the spec's runners: {}",
                            spec.runners.join(", ")
                        ),
                    ));
                }
                vec![r]
            }
            None => spec.runners.iter().collect(),
        };
        for runner in runners {
            let cell = Cell {
                name: cell_name(
                    &spec.name,
                    runner,
                    extra.tp,
                    extra.ep,
                    extra.users,
                    extra.offload,
                ),
                runner: Some(runner.clone()),
                tp: extra.tp,
                ep: extra.ep,
                users: extra.users,
                offload: extra.offload,
            };
            if placed.iter().any(|p| p.cell.name == cell.name) {
                return Err(doc.error(&field, format!("duplicates cell `{}`", cell.name)));
            }
            placed.push(Placed {
                cell,
                runner_field: if extra.runner.is_some() {
                    format!("{field}.runner")
                } else {
                    field.clone()
                },
                tp_field: format!("{field}.tp"),
                ep_field: format!("{field}.ep"),
                offload_field: format!("{field}.offload"),
            });
        }
    }
    Ok(())
}

fn check_cell(
    doc: &YamlDoc,
    spec: &NativeSpec,
    runners: &RunnerSet,
    p: &Placed,
) -> Result<(), SpecError> {
    let cell = &p.cell;
    let runner_name = cell.runner.as_deref().unwrap_or_default();
    let runner = find_runner(doc, runners, runner_name, &p.runner_field)?;
    if let Some(why) = runner.unsupported_reason(spec.engine, cell.offload) {
        return Err(doc.error(
            &p.offload_field,
            format!(
                "runner `{}` cannot run {} with offload `{}`: {why}",
                runner.name, spec.engine, cell.offload
            ),
        ));
    }
    let fields = CellFields {
        tp: &p.tp_field,
        ep: &p.ep_field,
    };
    check_parallelism(doc, cell, Some(runner), &fields)?;
    if !runner.engines.contains_key(&spec.engine) {
        return Err(doc.error(
            "engine",
            format!(
                "runner `{}` cannot start engine `{}`; it defines: {}",
                runner.name,
                spec.engine,
                runner
                    .engines
                    .keys()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if spec.engine == EngineKind::LlamaServer && cell.tp != 1 {
        return Err(doc.error(&p.tp_field, "llama-server runs on one device: tp must be 1"));
    }
    if runner
        .mode_flags(spec.engine, cell.offload, spec.offload_backend)
        .is_none()
    {
        let what = if cell.offload == Offload::On {
            format!("offload `on` with backend `{}`", spec.offload_backend)
        } else {
            format!("offload `{}`", cell.offload)
        };
        return Err(doc.error(
            &p.offload_field,
            format!(
                "runner `{}` defines no {} flags for {what}",
                runner.name, spec.engine
            ),
        ));
    }
    if cell.offload == Offload::On
        && spec.offload_gb.is_none()
        && spec.offload_dram_fraction.is_none()
    {
        return Err(doc.error(
            &p.offload_field,
            "offload `on` needs a host-memory budget: set offload_gb or offload_dram_fraction",
        ));
    }
    Ok(())
}
