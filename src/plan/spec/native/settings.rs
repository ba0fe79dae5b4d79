//! The settings a native spec gives every cell (model and its KV geometry, traces, offload
//! budget, workload, recipe launches, economics), resolved and checked; apart from the cell
//! matrix, which they do not depend on (the recipe only reads the cells' TPs).

use std::path::Path;

use super::{ModelSpec, NativeSpec, TracesSpec};
use crate::base::kinds::EngineKind;
use crate::base::model::{self, Attention, Geometry, KvDtype};
use crate::base::paths::expand_home;
use crate::base::yaml::{SpecError, YamlDoc};
use crate::data::trace_cache::RemoteTraces;
use crate::plan::spec::options::{self, SpecWorkload};
use crate::plan::spec::{Cell, Model, OffloadBudget, TraceSource, Traces};

/// The launch of recipe `name` for each TP the cells use, checked against the spec's engine and
/// image.
pub(super) fn tp_recipes(
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
pub(super) fn checked_economics(
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
pub(super) fn resolve_traces(doc: &YamlDoc, t: &TracesSpec) -> Result<Traces, SpecError> {
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

pub(super) fn resolve_model(doc: &YamlDoc, m: &ModelSpec) -> Result<Model, SpecError> {
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

pub(super) fn resolve_budget(
    doc: &YamlDoc,
    spec: &NativeSpec,
) -> Result<Option<OffloadBudget>, SpecError> {
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
pub(super) fn resolve_workload(
    doc: &YamlDoc,
    spec: &NativeSpec,
) -> Result<SpecWorkload, SpecError> {
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
