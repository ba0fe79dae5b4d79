//! InferenceX's AgentX aggregate (`<RESULT_FILENAME>.json`), computed in Rust the way
//! InferenceX's `utils/agentic/aggregation/process_agentic_result.py` computes it from an AIPerf
//! artifact directory, so that `collect` hands InferenceX a result it ingests unchanged without
//! running Python.
//!
//! The inputs are AIPerf's three export files ([`crate::data::aiperf`]) and, for the KV-cache pool
//! size, the engine log; the run's identity, which the processor takes from environment
//! variables (`RUNNER_TYPE`, `TP`, `MODEL`, `KV_OFFLOADING`, ...), comes from the cell's
//! `cell.json` ([`Identity`]). Each part names the Python function it follows. Floats are rounded
//! to 5 decimals and integral ones written as integers, as `round_floats` does.
//!
//! `collect` writes, per AgentX cell, under `OUT/agentx/`: `<RESULT_FILENAME>/aiperf_artifacts/`
//! (the exports; `<RESULT_FILENAME>/` is `RESULT_DIR` for InferenceX's processor, with the engine's
//! `server.log` and the processor's environment in `inferencex.env`) and `<RESULT_FILENAME>.json`
//! (the aggregate), `RESULT_FILENAME` named as InferenceX's `benchmark-tmpl.yml` names it. It
//! writes them in collect rather than in the cell: they derive from the cell's final artifacts
//! alone (the metrics scraper outlives the replay), a downloaded or zipped cell gets them too, and
//! a cell's upload stays the files it has always been.
//!
//! The parts, as InferenceX splits them: `requests` (`request_metrics.py`), `server`
//! (`server_metrics.py`); this module builds the aggregate (`build_agg` of
//! `process_agentic_result.py`) and writes it.

mod requests;
mod server;

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};

use crate::base::kinds::Offload;
pub use crate::data::aiperf::cell_export::TraceHitsCache;
use crate::data::aiperf::{ProfileExport, RecordInfo, ServerMetricsExport};
use crate::data::artifact::schema::CellPlan;
use requests::{accounting, request_metrics};
use server::server_metrics;

/// What InferenceX's processor reads from its environment, taken from a cell's plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// `RUNNER_TYPE` → `hw`.
    pub runner: String,
    /// `CONC`.
    pub conc: u32,
    pub image: String,
    pub model: String,
    /// `FRAMEWORK`: the engine (`sim` for the simulator, whose metrics are vLLM's).
    pub framework: String,
    pub precision: String,
    pub tp: u32,
    /// `EP_SIZE` (1 without expert parallelism, InferenceX's default).
    pub ep: u32,
    /// `KV_OFFLOADING`: `none` or `dram`.
    pub kv_offloading: String,
    /// `KV_OFFLOAD_BACKEND` when offloading.
    pub kv_offload_backend: Option<String>,
    /// `TOTAL_CPU_DRAM_GB`.
    pub cpu_dram_gb: u64,
    /// The cell, as `EXP_NAME` (with its folder's name when that differs: `CELL_repeat-2`).
    pub exp_name: String,
}

impl Identity {
    pub fn of(plan: &CellPlan) -> Self {
        let offload = plan.cell.offload == Offload::On;
        Identity {
            runner: plan.runner.clone(),
            conc: plan.cell.users,
            image: plan.image.clone().unwrap_or_default(),
            model: plan.model.clone(),
            framework: plan.engine.as_str().to_owned(),
            precision: plan.precision.clone().unwrap_or_default(),
            tp: plan.cell.tp.max(1),
            ep: plan.cell.ep.max(1),
            kv_offloading: if offload { "dram" } else { "none" }.to_owned(),
            kv_offload_backend: offload.then(|| plan.offload_backend.to_string()),
            cpu_dram_gb: if offload {
                plan.offload_gib.unwrap_or(0.0).round().max(0.0) as u64
            } else {
                0
            },
            exp_name: plan.cell.name.clone(),
        }
    }

    /// `RESULT_FILENAME` as InferenceX's `benchmark-tmpl.yml` builds it:
    /// `EXP_NAME_PRECISION_FRAMEWORK_tpT-pp1-dcp1-pcp1-epE-dpafalse_disagg-false_spec-none_concC_RUNNER`.
    fn result_filename(&self) -> String {
        format!(
            "{}_{}_{}_tp{}-pp1-dcp1-pcp1-ep{}-dpafalse_disagg-false_spec-none_conc{}_{}",
            self.exp_name,
            if self.precision.is_empty() {
                "none"
            } else {
                &self.precision
            },
            self.framework,
            self.tp,
            self.ep,
            self.conc,
            self.runner
        )
    }

    /// The environment InferenceX's processor reads, as `NAME=value` lines a shell sources
    /// (`set -a; . inferencex.env`): with it, `process_agentic_result.py` run on the exports
    /// makes the aggregate kvsweep wrote.
    fn env_file(&self) -> String {
        let backend_metadata = self
            .kv_offload_backend
            .as_ref()
            .map(|name| json!({"name": name}).to_string())
            .unwrap_or_default();
        let vars = [
            ("RESULT_FILENAME", self.result_filename()),
            ("RUNNER_TYPE", self.runner.clone()),
            ("CONC", self.conc.to_string()),
            ("IMAGE", self.image.clone()),
            ("MODEL", self.model.clone()),
            ("FRAMEWORK", self.framework.clone()),
            ("PRECISION", self.precision.clone()),
            ("SPEC_DECODING", "none".to_owned()),
            ("DISAGG", "false".to_owned()),
            ("IS_MULTINODE", "false".to_owned()),
            ("TP", self.tp.to_string()),
            ("EP_SIZE", self.ep.to_string()),
            ("DP_ATTENTION", "false".to_owned()),
            ("KV_OFFLOADING", self.kv_offloading.clone()),
            (
                "KV_OFFLOAD_BACKEND",
                self.kv_offload_backend.clone().unwrap_or_default(),
            ),
            ("KV_OFFLOAD_BACKEND_METADATA", backend_metadata),
            ("TOTAL_CPU_DRAM_GB", self.cpu_dram_gb.to_string()),
        ];
        vars.iter()
            .map(|(k, v)| {
                let quoted =
                    shlex::try_quote(v).map_or_else(|_| "''".to_owned(), |q| q.into_owned());
                format!("{k}={quoted}\n")
            })
            .collect()
    }

    /// The GPUs of a single-node run: `TP × PP × PCP` (`_gpu_shape`), PP = PCP = 1.
    fn gpus(&self) -> u32 {
        super::inferencex::gpu_count(self.tp)
    }
}

/// `round_floats(obj, 5)`: every finite float rounded to 5 decimals, an integral one of
/// magnitude ≥ 1 written as an integer.
fn round_floats(v: Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if !x.is_finite() {
                return Value::Number(n);
            }
            let r = (x * 1e5).round() / 1e5;
            if r.abs() >= 1.0 && r.fract() == 0.0 && r.abs() < 9.0e15 {
                json!(r as i64)
            } else {
                json!(r)
            }
        }
        Value::Array(a) => Value::Array(a.into_iter().map(round_floats).collect()),
        Value::Object(o) => {
            Value::Object(o.into_iter().map(|(k, v)| (k, round_floats(v))).collect())
        }
        other => other,
    }
}

/// `build_agg` (and `main`'s rounding): the AgentX aggregate of an AIPerf artifact directory's
/// contents.
pub fn aggregate(
    id: &Identity,
    records: &[RecordInfo],
    profile: Option<&ProfileExport>,
    server: Option<&ServerMetricsExport>,
    server_log: Option<&str>,
) -> Result<Value> {
    let (kept, acc) = accounting(records);
    let mut agg = Map::new();
    let mut put = |k: &str, v: Value| {
        agg.insert(k.to_owned(), v);
    };
    put("hw", json!(id.runner));
    put("conc", json!(id.conc));
    put("image", json!(id.image));
    put("recipe_fingerprint", json!(""));
    put("model", json!(id.model));
    put("infmax_model_prefix", json!(""));
    put("framework", json!(id.framework));
    put("precision", json!(id.precision));
    put("spec_decoding", json!("none"));
    put("disagg", json!(false));
    put("scenario_type", json!("agentic-coding"));
    put("is_multinode", json!(false));
    put("tp", json!(id.tp));
    put("ep", json!(id.ep));
    put("dp_attention", json!("false"));
    put("kv_offloading", json!(id.kv_offloading));
    put(
        "kv_offload_backend",
        id.kv_offload_backend
            .as_ref()
            .map_or(Value::Null, |name| json!({"name": name})),
    );
    put("allocated_cpu_dram_gb", json!(id.cpu_dram_gb));
    put("num_requests_total", acc["records_total"].clone());
    put("num_requests_successful", json!(kept.len()));
    put("request_accounting", acc);
    put("pp", json!(1));
    put("dcp_size", json!(1));
    put("pcp_size", json!(1));
    if let Some(dataset) = profile
        .and_then(|p| p.metadata.as_ref())
        .and_then(|m| m.dataset.as_ref())
        .filter(|d| d.is_object())
    {
        put("dataset", dataset.clone());
    }
    let request = request_metrics(&kept, profile, id.gpus());
    let (server, warnings) = server_metrics(server, &id.framework, &kept, server_log)?;
    let pool = server["kv_cache"]["gpu_total_tokens"].clone();
    put("request_metrics", request);
    put("server_metrics", server);
    put("kv_cache_pool_tokens", pool);
    if !warnings.is_empty() {
        put("warnings", json!(warnings));
    }
    Ok(round_floats(Value::Object(agg)))
}

/// Writes the cell's exports and aggregate under `out/agentx/` (see the module doc) and
/// returns the aggregate's path; `None` for a cell that did not run the AgentX scenario.
pub fn write(
    dir: &Path,
    out: &Path,
    traces: &mut TraceHitsCache,
) -> Result<Option<std::path::PathBuf>> {
    use crate::data::artifact::schema::JsonArtifact;
    let plan = CellPlan::read(dir)?;
    let crate::base::workload::Workload::Replay(args) = &plan.workload else {
        return Ok(None);
    };
    if args.agentx.scenario.is_none() {
        return Ok(None);
    }
    let exports = crate::data::aiperf::cell_export::from_cell(dir, traces)?;
    let mut id = Identity::of(&plan);
    // A repeat (`repeat-K/`) or a variant in a folder of its own name gets its own file.
    let folder = super::cells::dir_name(dir);
    if folder != plan.cell.name {
        id.exp_name = format!("{}_{folder}", id.exp_name);
    }
    let name = id.result_filename();
    let root = out.join("agentx");
    let result_dir = root.join(&name);
    exports.write(&result_dir.join("aiperf_artifacts"))?;
    // The processor reads RESULT_DIR/server.log for the KV pool size: keep the same there.
    let log = std::fs::read(dir.join("server.log")).ok();
    if let Some(bytes) = &log {
        let to = result_dir.join("server.log");
        std::fs::write(&to, bytes).with_context(|| format!("cannot write {}", to.display()))?;
    }
    let log = log.map(|b| String::from_utf8_lossy(&b).replace('\0', ""));
    let env = result_dir.join("inferencex.env");
    std::fs::write(&env, id.env_file())
        .with_context(|| format!("cannot write {}", env.display()))?;
    let agg = aggregate(
        &id,
        &exports.records,
        Some(&exports.profile),
        exports.server_metrics.as_ref(),
        log.as_deref(),
    )?;
    let path = root.join(format!("{name}.json"));
    crate::data::artifact::write_json_atomic(&path, &agg)?;
    Ok(Some(path))
}

/// [`write()`] for `collect`: a cell whose files do not fit their format stops the collect (as
/// everywhere in collect); any other failure is a warning, the cell's other results stand.
pub(crate) fn write_or_warn(
    dir: &Path,
    out: &Path,
    cell: &str,
    traces: &mut TraceHitsCache,
) -> Result<()> {
    match write(dir, out, traces) {
        Ok(_) => Ok(()),
        Err(e)
            if e.downcast_ref::<crate::data::artifact::schema::FormatError>()
                .is_some() =>
        {
            Err(e)
        }
        Err(e) => {
            eprintln!("warning: no AgentX result for {cell}: {e:#}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_rounded_to_5_decimals_and_integral_ones_become_integers() {
        let v =
            round_floats(json!({"a": 0.123456789, "b": [2.0, 0.0, 1.000001], "c": 3, "d": "s"}));
        assert_eq!(v, json!({"a": 0.12346, "b": [2, 0.0, 1], "c": 3, "d": "s"}));
        assert!(v["b"][0].is_i64() && v["b"][1].is_f64());
    }

    #[test]
    fn the_result_filename_is_inferencexs() {
        let id = Identity {
            runner: "h200-nv_0".into(),
            conc: 16,
            image: String::new(),
            model: "m".into(),
            framework: "vllm".into(),
            precision: "fp8".into(),
            tp: 8,
            ep: 1,
            kv_offloading: "dram".into(),
            kv_offload_backend: Some("native".into()),
            cpu_dram_gb: 256,
            exp_name: "dsr1_agentic".into(),
        };
        assert_eq!(
            id.result_filename(),
            "dsr1_agentic_fp8_vllm_tp8-pp1-dcp1-pcp1-ep1-dpafalse_disagg-false_spec-none_conc16_h200-nv_0"
        );
        let env = id.env_file();
        assert!(
            env.contains("KV_OFFLOAD_BACKEND_METADATA='{\"name\":\"native\"}'\n"),
            "{env}"
        );
        assert!(
            env.contains("TOTAL_CPU_DRAM_GB=256\n") && env.contains("IMAGE=''\n"),
            "{env}"
        );
    }
}
