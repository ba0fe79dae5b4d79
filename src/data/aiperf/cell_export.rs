//! A kvsweep replay cell as the three files an AIPerf run leaves in its artifact directory,
//! so that tools reading AIPerf's output (InferenceX's `process_agentic_result.py` and
//! `validate_agentic_result.py`) read a kvsweep cell unchanged.
//!
//! Everything comes from the cell's own artifacts (`cell.json`, `metadata.json`,
//! `summary.json`, `requests.csv`, `metrics.csv`) and, for the theoretical hit rate, its traces
//! where they are still at the path `cell.json` names. What a cell does not record is left out
//! rather than made up: AIPerf's per-chunk latencies, warm-up requests (kvsweep counts them in
//! `metadata.json` only), HTTP timing breakdowns.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{Context, Result, bail};
use indexmap::IndexMap;

use super::records::{self, Timeline};
use super::schema::aggregate::{AggregateEntry, JsonMetricResult, ProfileExport, RunMetadata};
use super::schema::record::{ErrorDetailsCount, RecordInfo};
use super::schema::server_export::ServerMetricsExport;
use super::schema::{CreditPhase, PROFILE_EXPORT_FILE, RECORDS_FILE, SERVER_METRICS_FILE};
use super::server_metrics::{self, Window};
use super::submission;
use super::theoretical::TheoreticalHits;
use crate::base::kinds::TraceFormat;
use crate::base::workload::Workload;
use crate::data::artifact::schema::{
    CellPlan, JsonArtifact, Metadata, MetricsRow, Outcome, RequestRow, Summary, read_csv_rows,
};
use crate::data::trace::{self, LoadOptions};

/// The name AIPerf's scenario goes by, which kvsweep's `--scenario agentx` follows.
const AGENTX_SCENARIO: &str = "inferencex-agentx-mvp";

/// A cell's AIPerf export files.
#[derive(Debug, Clone)]
pub(crate) struct CellExports {
    pub records: Vec<RecordInfo>,
    pub profile: ProfileExport,
    /// `None` for a cell without a vLLM-named `metrics.csv`.
    pub(crate) server_metrics: Option<ServerMetricsExport>,
}

impl CellExports {
    /// Writes `profile_export.jsonl`, `profile_export_aiperf.json` and (when there is one)
    /// `server_metrics_export.json` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut jsonl = String::new();
        for r in &self.records {
            jsonl.push_str(&serde_json::to_string(r)?);
            jsonl.push('\n');
        }
        let path = dir.join(RECORDS_FILE);
        std::fs::write(&path, jsonl).with_context(|| format!("cannot write {}", path.display()))?;
        crate::data::artifact::write_json_atomic(&dir.join(PROFILE_EXPORT_FILE), &self.profile)?;
        if let Some(m) = &self.server_metrics {
            crate::data::artifact::write_json_atomic(&dir.join(SERVER_METRICS_FILE), m)?;
        }
        Ok(())
    }
}

/// Theoretical hits by trace set (path, format, block size), so that a collect loads each set
/// once: a sweep's cells share one.
#[derive(Default)]
pub struct TraceHitsCache(HashMap<(PathBuf, String, Option<u32>), Option<Rc<TheoreticalHits>>>);

/// The exports of the replay cell in `dir`.
pub(crate) fn from_cell(dir: &Path, cache: &mut TraceHitsCache) -> Result<CellExports> {
    let plan = CellPlan::read(dir)?;
    let Workload::Replay(args) = &plan.workload else {
        bail!(
            "{}: a tester cell has no per-request records to export",
            dir.display()
        );
    };
    let meta = Metadata::read(dir)?;
    let summary = Summary::read(dir)?;
    let rows = read_csv_rows(
        &dir.join(RequestRow::FILE),
        |r: &RequestRow| r.format_version,
        RequestRow::VERSION,
    )?;
    let finished = meta.finished_at.with_context(|| {
        format!(
            "{}: finished_at is null: the replay did not finish",
            dir.join(Metadata::FILE).display()
        )
    })?;
    // requests.csv times count from the start of the timed run (after the warm-up), which
    // lasted summary.json's duration and ended as metadata.json's finished_at was taken.
    let timeline = Timeline {
        start_unix_s: finished - summary.duration_s,
        warmup_window_s: summary.warmup_window_s,
    };
    let records = records::records(&rows, timeline);
    let theory = plan.traces.as_ref().and_then(|path| {
        let key = (path.clone(), plan.trace_format.to_string(), args.block_size);
        cache
            .0
            .entry(key)
            .or_insert_with(|| theoretical_hits(&plan, args.block_size, dir).map(Rc::new))
            .clone()
    });
    let profiled: Vec<&RequestRow> = rows
        .iter()
        .filter(|r| r.sent_s >= summary.warmup_window_s)
        .collect();
    let metadata = args.agentx.scenario.is_some().then(|| {
        let reasons = submission::invalid_reasons(args, &profiled, meta.completed);
        RunMetadata {
            dataset: None,
            scenario: Some(AGENTX_SCENARIO.to_owned()),
            submission_valid: Some(reasons.is_empty()),
            submission_invalid_reasons: (!reasons.is_empty()).then_some(reasons),
        }
    });
    let mut profile = profile_export(&records, &profiled, theory.as_deref());
    profile.input_config = Some(input_config(&plan, &meta));
    profile.metadata = metadata;
    profile.error_summary = Some(error_summary(&records));
    profile.was_cancelled = Some(!meta.completed);
    profile.is_complete = Some(meta.completed);
    profile.start_time = Some(super::iso_time(timeline.start_unix_s));
    profile.end_time = Some(super::iso_time(finished));
    profile.entries.insert(
        "exported_by".to_owned(),
        AggregateEntry::Other(format!("kvsweep {}", crate::VERSION).into()),
    );
    let server_metrics = server_metrics_of(dir, &meta, &plan, timeline.start_unix_s, finished)?;
    Ok(CellExports {
        records,
        profile,
        server_metrics,
    })
}

/// The part of AIPerf's `input_config` (its `BenchmarkConfig`, which forbids unknown keys) a
/// replay cell can say, from what `metadata.json` records the replay ran with: the model, the
/// endpoints, the traces and seed, the profiling phase (concurrency = users, duration) and the
/// scenario. With it a reader of AIPerf runs (kvsweep's own collect among them) places the
/// export as it places an AIPerf run.
fn input_config(plan: &CellPlan, meta: &Metadata) -> serde_json::Value {
    // AIPerf's dataset formats for the trace formats both tools read.
    let format = match plan.trace_format {
        TraceFormat::Kvct => Some("weka_trace"),
        TraceFormat::Mooncake => Some("mooncake_trace"),
        TraceFormat::Auto | TraceFormat::Bailian => None,
    };
    let mut dataset = serde_json::json!({
        "name": "main",
        "type": "file",
        "path": plan.traces,
        "random_seed": meta.seed,
    });
    if let Some(format) = format {
        dataset["format"] = format.into();
    }
    let scenario = match &plan.workload {
        Workload::Replay(args) => args.agentx.scenario.is_some().then_some(AGENTX_SCENARIO),
        Workload::Test(_) => None,
    };
    serde_json::json!({
        "models": {"items": [{"name": meta.model.as_deref().unwrap_or(&plan.model)}]},
        // kvsweep's --api values are AIPerf's endpoint types (chat, completions).
        "endpoint": {"urls": meta.url, "type": meta.api, "streaming": true},
        "datasets": [dataset],
        "phases": [{
            "name": "profiling",
            "kind": "profiling",
            "type": "concurrency",
            "duration": meta.duration_s,
            "concurrency": meta.users,
        }],
        "scenario": scenario,
    })
}

/// The theoretical hits of the cell's traces, when they are still where `cell.json` says (a
/// warning when they are there but do not load).
fn theoretical_hits(
    plan: &CellPlan,
    block_size: Option<u32>,
    dir: &Path,
) -> Option<TheoreticalHits> {
    let path = plan.traces.as_ref().filter(|p| p.exists())?;
    let loaded = trace::load(
        std::slice::from_ref(path),
        LoadOptions {
            format: plan.trace_format,
            jsonl_block_size: block_size,
            strict: false,
        },
    );
    match loaded {
        Ok(set) => Some(TheoreticalHits::of(&set.sessions)),
        Err(e) => {
            eprintln!(
                "warning: {}: no theoretical prefix-cache hit rate: {e:#}",
                dir.display()
            );
            None
        }
    }
}

/// AIPerf's `error_summary`: each distinct error (code, type, message) and how often the
/// profiled requests met it, in order of first appearance.
fn error_summary(records: &[RecordInfo]) -> Vec<ErrorDetailsCount> {
    let mut out: Vec<ErrorDetailsCount> = Vec::new();
    let profiled = records
        .iter()
        .filter(|r| r.metadata.benchmark_phase == CreditPhase::Profiling);
    for e in profiled.filter_map(|r| r.error.as_ref()) {
        let same = |c: &&mut ErrorDetailsCount| {
            (
                c.error_details.code,
                &c.error_details.error_type,
                &c.error_details.message,
            ) == (e.code, &e.error_type, &e.message)
        };
        match out.iter_mut().find(same) {
            Some(c) => c.count += 1,
            None => out.push(ErrorDetailsCount {
                error_details: e.clone(),
                count: 1,
            }),
        }
    }
    out
}

/// The server-metrics export of a cell whose scraper saw a vLLM-named server.
fn server_metrics_of(
    dir: &Path,
    meta: &Metadata,
    plan: &CellPlan,
    start_s: f64,
    end_s: f64,
) -> Result<Option<ServerMetricsExport>> {
    let path = dir.join(MetricsRow::FILE);
    let engine = std::fs::read_to_string(dir.join("metrics_meta.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["engine"].as_str().map(str::to_owned));
    if !path.exists() || engine.as_deref() != Some("vllm") {
        return Ok(None);
    }
    let rows = read_csv_rows(
        &path,
        |r: &MetricsRow| r.format_version,
        MetricsRow::VERSION,
    )?;
    let endpoint = meta.url.first().map_or_else(
        || "unknown".to_owned(),
        |u| format!("{}/metrics", u.trim_end_matches('/')),
    );
    let model = meta.model.as_deref().unwrap_or(&plan.model);
    Ok(Some(server_metrics::export(
        &rows,
        Window { start_s, end_s },
        &endpoint,
        model,
    )))
}

/// AIPerf's distribution of one record metric: numpy's linear percentiles, population standard
/// deviation, count and sum.
fn distribution(unit: &str, mut v: Vec<f64>) -> Option<JsonMetricResult> {
    v.sort_by(f64::total_cmp);
    let (mean, std) = crate::base::stats::mean_pstdev(&v)?;
    let sum: f64 = v.iter().sum();
    let p = |q: f64| Some(crate::base::stats::percentile(&v, q));
    Some(JsonMetricResult {
        unit: unit.to_owned(),
        avg: Some(mean),
        p1: p(1.0),
        p5: p(5.0),
        p10: p(10.0),
        p25: p(25.0),
        p50: p(50.0),
        p75: p(75.0),
        p90: p(90.0),
        p95: p(95.0),
        p99: p(99.0),
        min: v.first().and_then(|x| serde_json::Number::from_f64(*x)),
        max: v.last().and_then(|x| serde_json::Number::from_f64(*x)),
        std: Some(std),
        count: Some(v.len() as u64),
        sum: serde_json::Number::from_f64(sum),
    })
}

/// `profile_export_aiperf.json`'s metrics over the profiling records, AIPerf's tags and units.
fn profile_export(
    records: &[RecordInfo],
    profiled_rows: &[&RequestRow],
    theory: Option<&TheoreticalHits>,
) -> ProfileExport {
    let profiling: Vec<&RecordInfo> = records
        .iter()
        .filter(|r| r.metadata.benchmark_phase == CreditPhase::Profiling)
        .collect();
    let ok: Vec<&RecordInfo> = profiling
        .iter()
        .copied()
        .filter(|r| r.error.is_none())
        .collect();
    let errors = profiling.len() - ok.len();
    let values = |tag: &str| -> Vec<f64> { ok.iter().filter_map(|r| r.metric(tag)).collect() };
    let dist = |tag: &str, unit: &str| distribution(unit, values(tag));
    let mut entries: IndexMap<String, AggregateEntry> = IndexMap::new();
    let mut put = |tag: &str, m: Option<JsonMetricResult>| {
        if let Some(m) = m {
            entries.insert(tag.to_owned(), AggregateEntry::Metric(m));
        }
    };
    let start = profiling.iter().map(|r| r.metadata.request_start_ns).min();
    let end = profiling.iter().map(|r| r.metadata.request_end_ns).max();
    let duration_s = match (start, end) {
        (Some(s), Some(e)) if e > s => Some((e - s) as f64 / 1e9),
        _ => None,
    };
    let total_isl: f64 = values("input_sequence_length").iter().sum();
    let total_osl: f64 = values("output_sequence_length").iter().sum();
    let per_s = |x: f64| duration_s.map(|d| x / d);
    put(
        "request_throughput",
        per_s(ok.len() as f64).map(|v| JsonMetricResult::scalar("requests/sec", v)),
    );
    put("request_latency", dist("request_latency", "ms"));
    put(
        "request_count",
        Some(JsonMetricResult::scalar("requests", ok.len() as f64)),
    );
    put("time_to_first_token", dist("time_to_first_token", "ms"));
    put("inter_token_latency", dist("inter_token_latency", "ms"));
    put(
        "output_token_throughput",
        per_s(total_osl).map(|v| JsonMetricResult::scalar("tokens/sec", v)),
    );
    put(
        "output_token_throughput_per_user",
        dist("output_token_throughput_per_user", "tokens/sec/user"),
    );
    put(
        "output_sequence_length",
        dist("output_sequence_length", "tokens"),
    );
    put(
        "input_sequence_length",
        dist("input_sequence_length", "tokens"),
    );
    put(
        "usage_prompt_cache_read_tokens",
        dist("usage_prompt_cache_read_tokens", "tokens"),
    );
    put(
        "total_output_tokens",
        Some(JsonMetricResult::scalar("tokens", total_osl)),
    );
    put(
        "benchmark_duration",
        duration_s.map(|d| JsonMetricResult::scalar("sec", d)),
    );
    put(
        "total_isl",
        Some(JsonMetricResult::scalar("tokens", total_isl)),
    );
    put(
        "total_osl",
        Some(JsonMetricResult::scalar("tokens", total_osl)),
    );
    // ERROR_ONLY in AIPerf: written only when a request failed.
    put(
        "error_request_count",
        (errors > 0).then(|| JsonMetricResult::scalar("requests", errors as f64)),
    );
    put(
        "completed_request_count",
        Some(JsonMetricResult::scalar("requests", profiling.len() as f64)),
    );
    put(
        "theoretical_prefix_cache_hit",
        theory.and_then(|t| theoretical_hit_metric(t, profiled_rows)),
    );
    ProfileExport {
        schema_version: Some("1.4".to_owned()),
        aiperf_version: None,
        benchmark_id: None,
        input_config: None,
        run_info: None,
        was_cancelled: None,
        is_complete: None,
        incomplete_reason: None,
        error_summary: None,
        start_time: None,
        end_time: None,
        branch_stats: None,
        warmup_metrics: None,
        metadata: None,
        entries,
    }
}

/// `theoretical_prefix_cache_hit` over the successful profiled requests the traces hold:
/// `100 × hit / total` blocks %, `count` the total blocks and `sum` the hit blocks.
fn theoretical_hit_metric(
    theory: &TheoreticalHits,
    rows: &[&RequestRow],
) -> Option<JsonMetricResult> {
    let (hits, total) = rows
        .iter()
        .filter(|r| r.status == Outcome::Ok)
        .filter_map(|r| theory.get(&r.session, r.request_index))
        .fold((0u64, 0u64), |(h, t), (rh, rt)| (h + rh.min(rt), t + rt));
    (total > 0).then(|| JsonMetricResult {
        unit: "%".to_owned(),
        avg: Some(100.0 * hits as f64 / total as f64),
        count: Some(total),
        sum: Some(hits.into()),
        ..JsonMetricResult::default()
    })
}
