//! One AIPerf run converted into a kvsweep cell directory: each record of
//! `profile_export.jsonl` as the request kvsweep's replay would have recorded, then
//! `requests.csv`, `summary.json`, `cell.json`, `metrics.csv` and `status.json` from them and
//! from AIPerf's aggregate; and AIPerf's own submission verdict on the run.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use indexmap::IndexMap;

use super::Placement;
use crate::base::kinds::{Api, OffloadBackend, TraceFormat};
use crate::base::matrix_cell::Cell;
use crate::base::validity::ValidityThresholds;
use crate::base::workload::replay::ReplayArgs;
use crate::data::aiperf::input_config::InputConfig;
use crate::data::aiperf::schema::{
    PROFILE_EXPORT_FILE as AGGREGATE_FILE, RECORDS_FILE, SERVER_METRICS_FILE,
};
use crate::data::aiperf::{CreditPhase, MetricValueKind, ProfileExport, RecordInfo};
use crate::data::artifact::CsvLog;
use crate::data::artifact::schema::{
    CellPlan, CellState, FormatError, JsonArtifact, MetricsRow, Outcome, RequestRow, Status,
};
use crate::data::tally::{RequestRecord, Slo, Tally};

/// A format error in one of the AIPerf files of `dir`.
fn format_error(dir: &Path, file: &str, message: String) -> anyhow::Error {
    FormatError {
        file: dir.join(file),
        message,
    }
    .into()
}

/// A whole token count from a record metric.
fn tokens(v: f64) -> u32 {
    v.round().clamp(0.0, f64::from(u32::MAX)) as u32
}

/// The request kvsweep's replay would have recorded for AIPerf record `r`, as request `id` of
/// user `user`, its times in seconds from the run's start (`secs`); the error names the field
/// the record lacks.
fn request_record(
    r: &RecordInfo,
    id: u64,
    user: u32,
    secs: &dyn Fn(u64) -> f64,
) -> Result<RequestRecord, String> {
    let m = &r.metadata;
    let missing = |field: &str| format!("field `{field}` is missing");
    let sent_s = secs(m.request_start_ns);
    let done_s = secs(m.request_end_ns);
    let mut rec = RequestRecord {
        id,
        user,
        session: m
            .conversation_id
            .clone()
            .ok_or_else(|| missing("metadata.conversation_id"))?,
        index: m
            .turn_index
            .ok_or_else(|| missing("metadata.turn_index"))
            .and_then(|t| {
                u32::try_from(t).map_err(|e| format!("field `metadata.turn_index`: {e}"))
            })?,
        endpoint: 0,
        scheduled_s: m.credit_issued_ns.map_or(sent_s, secs),
        sent_s,
        attempts: 1,
        fresh: false,
        done_s,
        ttft_ms: None,
        e2e_ms: (done_s - sent_s) * 1000.0,
        gaps_ms: Vec::new(),
        trace_input_tokens: r.metric("input_sequence_length").map_or(0, tokens),
        trace_output_tokens: 0,
        prompt_tokens: None,
        completion_tokens: None,
        cached_tokens: None,
        outcome: Outcome::Ok,
        http_status: 200,
        error: String::new(),
    };
    if let Some(e) = &r.error {
        // A failed record carries only the metrics it reached: its timings are the error's.
        let timeout = e
            .error_type
            .as_deref()
            .is_some_and(|k| k.to_ascii_lowercase().contains("timeout"));
        rec.outcome = if timeout {
            Outcome::Timeout
        } else {
            Outcome::Error
        };
        rec.http_status = e.code.and_then(|c| u16::try_from(c).ok()).unwrap_or(0);
        rec.error = e.message.clone();
        return Ok(rec);
    }
    let need = |tag: &str| {
        r.metric(tag)
            .ok_or_else(|| missing(&format!("metrics.{tag}")))
    };
    rec.e2e_ms = need("request_latency")?;
    rec.trace_input_tokens = tokens(need("input_sequence_length")?);
    let osl = tokens(need("output_sequence_length")?);
    rec.trace_output_tokens = osl;
    rec.completion_tokens = Some(r.metric("usage_completion_tokens").map_or(osl, tokens));
    rec.prompt_tokens = r.metric("usage_prompt_tokens").map(tokens);
    rec.cached_tokens = r.metric("usage_prompt_cache_read_tokens").map(tokens);
    rec.ttft_ms = r.metric("time_to_first_token");
    if let Some(MetricValueKind::List(gaps)) =
        r.metrics.get("inter_chunk_latency").map(|m| &m.value)
    {
        rec.gaps_ms = gaps.clone();
    }
    Ok(rec)
}

/// Converts the AIPerf run in `src` into a kvsweep cell directory `cell_dir`, placed by
/// `placement`; returns the cell's name.
pub fn convert(src: &Path, placement: &Placement, cell_dir: &Path) -> Result<String> {
    let aggregate = crate::data::aiperf::read_profile_export(&src.join(AGGREGATE_FILE))?;
    // AIPerf writes one record per line: the record at index i is on line i + 1.
    let records: Vec<(usize, RecordInfo)> =
        crate::data::aiperf::read_records(&src.join(RECORDS_FILE))?
            .into_iter()
            .enumerate()
            .map(|(i, r)| (i + 1, r))
            .collect();
    let config_error = |m: String| format_error(src, AGGREGATE_FILE, m);
    let config = aggregate
        .input_config
        .as_ref()
        .ok_or_else(|| config_error("field `input_config` is missing".into()))
        .and_then(|v| InputConfig::from_value(v).map_err(config_error))?;
    let profiling = config.profiling().ok_or_else(|| {
        config_error("field `input_config.phases`: no phase of kind profiling".into())
    })?;
    let users = profiling.concurrency.ok_or_else(|| {
        config_error(
            "field `input_config.phases[kind=profiling].concurrency` is missing: kvsweep counts users as AIPerf's concurrency".into(),
        )
    })?;
    let model = config
        .models
        .items
        .first()
        .map(|m| m.name.clone())
        .ok_or_else(|| config_error("field `input_config.models.items` is empty".into()))?;
    if records.is_empty() {
        bail!(format_error(src, RECORDS_FILE, "no records".into()));
    }

    // The run starts at its first credit (AIPerf's schedule) or send, whichever is first.
    let t0 = records
        .iter()
        .map(|(_, r)| {
            r.metadata
                .credit_issued_ns
                .unwrap_or(r.metadata.request_start_ns)
                .min(r.metadata.request_start_ns)
        })
        .min()
        .unwrap_or(0);
    let secs = |ns: u64| ns.saturating_sub(t0) as f64 / 1e9;
    let mut lanes: HashMap<String, u32> = HashMap::new();
    let mut by_send: Vec<&(usize, RecordInfo)> = records.iter().collect();
    by_send.sort_by_key(|(_, r)| r.metadata.request_start_ns);
    let mut converted = Vec::with_capacity(records.len());
    for (id, (line, r)) in by_send.iter().enumerate() {
        let m = &r.metadata;
        let lane = m
            .root_correlation_id
            .clone()
            .or_else(|| m.x_correlation_id.clone())
            .unwrap_or_else(|| format!("session-{}", m.session_num));
        let next = lanes.len() as u32;
        let user = *lanes.entry(lane).or_insert(next);
        let rec = request_record(r, id as u64, user, &secs)
            .map_err(|field| format_error(src, RECORDS_FILE, format!("line {line}: {field}")))?;
        converted.push((m.benchmark_phase, rec));
    }

    // AIPerf's warm-up phase is kvsweep's warm-up window: it ends at the profiling phase's
    // first send, and no warm-up request may be sent after that.
    let first_profiled = converted
        .iter()
        .filter(|(phase, _)| *phase == CreditPhase::Profiling)
        .map(|(_, r)| r.sent_s)
        .reduce(f64::min)
        .ok_or_else(|| {
            format_error(src, RECORDS_FILE, "no record of the profiling phase".into())
        })?;
    let has_warmup = converted
        .iter()
        .any(|(phase, _)| *phase == CreditPhase::Warmup);
    let warmup_window_s = if has_warmup { first_profiled } else { 0.0 };
    if let Some((_, late)) = converted
        .iter()
        .find(|(phase, r)| *phase == CreditPhase::Warmup && r.sent_s >= warmup_window_s)
    {
        bail!(format_error(
            src,
            RECORDS_FILE,
            format!(
                "a warm-up request (conversation {}, turn {}) was sent after profiling began: AIPerf's phases overlap, and kvsweep's warm-up window cannot hold them",
                late.session, late.index
            )
        ));
    }
    let duration_s = converted.iter().map(|(_, r)| r.done_s).fold(0.0, f64::max);
    let name = placement.name.clone().unwrap_or_else(|| {
        format!(
            "aiperf_tp{}_users{users}_offload{}",
            placement.tp,
            placement.offload.as_str()
        )
    });
    let planned_s = warmup_window_s + profiling.duration.unwrap_or(duration_s - warmup_window_s);
    let workload = stand_in_workload(src, &model, users, planned_s)?;
    let crate::base::workload::Workload::Replay(replay_args) = &workload else {
        bail!("`replay` parsed as another workload");
    };
    let mut tally = Tally::new(
        placement.engine.as_str(),
        &[],
        Slo::of(&replay_args.control),
        warmup_window_s,
    );
    std::fs::create_dir_all(cell_dir)
        .with_context(|| format!("cannot create {}", cell_dir.display()))?;
    let mut requests = CsvLog::create(&cell_dir.join(RequestRow::FILE), RequestRow::COLUMNS)?;
    let mut by_end: Vec<&RequestRecord> = converted.iter().map(|(_, r)| r).collect();
    by_end.sort_by(|a, b| a.done_s.total_cmp(&b.done_s));
    for r in by_end {
        requests.append_row(&r.row(tally.slo()))?;
        tally.add(r);
    }
    requests.flush()?;
    // Absent flags: AIPerf did not say the run was cut short.
    let cancelled = aggregate.was_cancelled == Some(true);
    let completed = !cancelled && aggregate.is_complete != Some(false);
    // `client_cpu` stays empty (`cores: 0`): AIPerf does not record its client's CPU use.
    let summary = tally.summary(duration_s, completed);
    summary.write(cell_dir)?;

    let plan = cell_plan(
        src,
        placement,
        Cell {
            name: name.clone(),
            runner: Some(placement.runner.clone()),
            tp: placement.tp,
            ep: placement.ep,
            users,
            offload: placement.offload,
        },
        model,
        workload,
        planned_s.ceil() as u64,
    );
    plan.write(cell_dir)?;
    write_server_metrics(src, cell_dir)?;
    let (state, reason) = if completed {
        (CellState::Ok, "AIPerf run complete".to_owned())
    } else {
        (
            CellState::Partial,
            format!(
                "AIPerf run {}",
                if cancelled { "cancelled" } else { "incomplete" }
            ),
        )
    };
    let mut status = Status::new(state, reason);
    status.cell = Some(name.clone());
    status.requests = Some(records.len() as u64);
    status.failed_requests = Some(
        converted
            .iter()
            .filter(|(_, r)| r.outcome != Outcome::Ok)
            .count() as u64,
    );
    status.write(cell_dir)?;
    Ok(name)
}

/// The replay workload that stands for an AIPerf run in its `cell.json`: its model, users and
/// duration, the replay's defaults otherwise (the SLO goodput is judged against among them),
/// built as a spec's `replay:` options are. Its traces and output point at the AIPerf
/// directory, whose input config names AIPerf's own dataset; its URL is no server of ours.
fn stand_in_workload(
    src: &Path,
    model: &str,
    users: u32,
    planned_s: f64,
) -> Result<crate::base::workload::Workload> {
    let mut args: ReplayArgs =
        crate::base::workload::options::from_options(&IndexMap::new(), &["traces", "out"])
            .map_err(|e| anyhow::anyhow!("the replay's defaults: {}", e.message))?;
    args.model = Some(model.to_owned());
    args.api = Api::Chat;
    args.users = users;
    args.duration = planned_s;
    args.traces = vec![src.to_owned()];
    args.out = src.to_owned();
    args.url = vec!["http://aiperf.invalid".to_owned()];
    Ok(crate::base::workload::Workload::Replay(args))
}

/// The `cell.json` of an AIPerf run: where the placement says it ran, what it replayed
/// (`workload`), the default validity thresholds; no traces (AIPerf's dataset is named in its
/// own input config) and no engine settings (AIPerf does not record them).
fn cell_plan(
    src: &Path,
    placement: &Placement,
    cell: Cell,
    model: String,
    workload: crate::base::workload::Workload,
    duration_s: u64,
) -> CellPlan {
    CellPlan {
        format_version: CellPlan::VERSION,
        cell,
        spec: src.join(AGGREGATE_FILE),
        runner: placement.runner.clone(),
        engine: placement.engine,
        model,
        model_path: None,
        max_model_len: None,
        image: None,
        precision: placement.precision.clone(),
        offload_backend: OffloadBackend::default(),
        offload_gib: None,
        engine_args: Vec::new(),
        recipe: None,
        duration_s,
        traces: None,
        trace_url: None,
        trace_format: TraceFormat::Auto,
        workload,
        port: 0,
        health_timeout_s: 0,
        validity: ValidityThresholds::default(),
        economics: None,
    }
}

/// Writes `metrics.csv` from the run's server-metrics export, if it has one.
fn write_server_metrics(src: &Path, cell_dir: &Path) -> Result<()> {
    let path = src.join(SERVER_METRICS_FILE);
    if !path.is_file() {
        return Ok(());
    }
    let export = crate::data::aiperf::read_server_metrics(&path)?;
    let range = export
        .summary
        .phase_time_ranges
        .as_ref()
        .and_then(|r| r.get("profiling"))
        .and_then(|r| Some((r.start_ns?, r.end_ns?)))
        .ok_or_else(|| {
            format_error(
                src,
                SERVER_METRICS_FILE,
                "field `summary.phase_time_ranges.profiling` (start_ns and end_ns) is missing"
                    .into(),
            )
        })?;
    let secs = |ns: u64| ns as f64 / 1e9;
    let Some(rows) =
        crate::results::collect::aiperf_server_metrics::rows(&export, secs(range.0), secs(range.1))
    else {
        return Ok(());
    };
    let out = cell_dir.join(MetricsRow::FILE);
    let mut w =
        csv::Writer::from_path(&out).with_context(|| format!("cannot write {}", out.display()))?;
    for row in rows {
        w.serialize(row)?;
    }
    w.flush()?;
    Ok(())
}

/// AIPerf's own verdict on the run (`metadata.submission_valid`, as InferenceX gates on it),
/// as an invalid reason; `None` when AIPerf judged it valid or did not judge it.
pub(super) fn submission_verdict(aggregate: &ProfileExport) -> Option<String> {
    let m = aggregate.metadata.as_ref()?;
    (m.submission_valid == Some(false)).then(|| {
        format!(
            "AIPerf: submission_valid false ({})",
            m.submission_invalid_reasons
                .as_deref()
                .unwrap_or_default()
                .join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::kinds::EngineKind;
    use crate::data::artifact::schema::{RequestRow, Summary, read_csv_rows};
    use crate::results::collect::aiperf_cells::fixtures::{
        aggregate, placement, record, run, write_run,
    };

    #[test]
    fn records_become_request_rows_and_the_warm_up_phase_the_warm_up_window() {
        let src = tempfile::tempdir().expect("tempdir");
        write_run(src.path(), &run(), &aggregate());
        let out = tempfile::tempdir().expect("tempdir");
        let cell = out.path().join("cell");
        let name = convert(src.path(), &placement(src.path()), &cell).expect("converts");
        assert_eq!(name, "aiperf_tp2_users2_offloadon");
        let plan = CellPlan::read(&cell).expect("cell.json");
        assert_eq!(
            (plan.cell.users, plan.cell.tp, plan.engine),
            (2, 2, EngineKind::Vllm)
        );
        assert_eq!(plan.model, "llama-3.1-8b");
        let rows = read_csv_rows(
            &cell.join(RequestRow::FILE),
            |r: &RequestRow| r.format_version,
            RequestRow::VERSION,
        )
        .expect("requests.csv");
        assert_eq!(rows.len(), 6);
        // Lanes are users in order of their first send; times count from the first credit,
        // 2 ms before the first send.
        let first = rows
            .iter()
            .find(|r| r.session == "trace_a" && r.request_index == 1);
        let first = first.expect("lane a, turn 1");
        assert_eq!(first.user, 0);
        assert!((first.scheduled_s - 2.0).abs() < 1e-6, "{first:?}");
        assert!((first.sent_s - 2.002).abs() < 1e-6, "{first:?}");
        assert!((first.e2e_ms - 1000.0).abs() < 1e-6);
        assert_eq!(first.itl_max_ms, Some(30.0));
        assert_eq!(
            (first.prompt_tokens, first.cached_tokens),
            (Some(1010), Some(505))
        );
        let failed: Vec<&RequestRow> = rows.iter().filter(|r| r.status != Outcome::Ok).collect();
        assert_eq!(failed.len(), 1);
        assert_eq!((failed[0].user, failed[0].http_status), (1, 500));
        assert_eq!(failed[0].error, "boom");

        let s = Summary::read(&cell).expect("summary.json");
        // The warm-up window ends at the first profiled send: the two warm-ups stay out.
        assert!(
            (s.warmup_window_s - 2.002).abs() < 1e-6,
            "{}",
            s.warmup_window_s
        );
        assert_eq!(s.warmup_requests, 2);
        assert_eq!((s.requests.ok, s.requests.failed), (3, 1));
        // First send 2 ms after the first credit, last answer at 6 s: 6.002 s.
        assert!((s.duration_s - 6.002).abs() < 1e-6, "{}", s.duration_s);
        assert_eq!(s.cache.hit_rate, Some(0.5));
        // The summary's histograms keep three significant digits.
        let near = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() <= want * 1e-3);
        assert!(near(s.ttft_ms.p50, 100.0), "{:?}", s.ttft_ms);
        // E2E 1000, 1500 and 1000 ms over the 3 profiled successes.
        assert!(near(s.e2e_ms.p50, 1000.0), "{:?}", s.e2e_ms);
        assert!(near(s.e2e_ms.max, 1500.0), "{:?}", s.e2e_ms);
        // 3 × 1010 prompt tokens over 6.002 − 2.002 = 4 s.
        assert!((s.throughput.input_tokens_per_s - 3030.0 / 4.0).abs() < 1e-6);
        assert_eq!(s.client_cpu.cores, 0, "not measured");
        let status = Status::read(&cell).expect("status.json");
        assert_eq!(status.status, CellState::Ok);
        assert_eq!(
            submission_verdict(
                &crate::data::aiperf::read_profile_export(&src.path().join(AGGREGATE_FILE))
                    .expect("the aggregate")
            )
            .as_deref(),
            Some("AIPerf: submission_valid false (unsafe_override)")
        );
    }

    #[test]
    fn a_record_without_a_needed_field_is_named_with_its_file_and_line() {
        let src = tempfile::tempdir().expect("tempdir");
        let mut records = run();
        records[3]["metrics"]
            .as_object_mut()
            .expect("metrics")
            .remove("request_latency");
        write_run(src.path(), &records, &aggregate());
        let out = tempfile::tempdir().expect("tempdir");
        let e = convert(src.path(), &placement(src.path()), &out.path().join("c"))
            .expect_err("no latency");
        let text = format!("{e:#}");
        assert!(
            text.contains(
                "profile_export.jsonl: line 4: field `metrics.request_latency` is missing"
            ),
            "{text}"
        );
        assert!(e.downcast_ref::<FormatError>().is_some());

        // A line cut short names its line too.
        let full = std::fs::read_to_string(src.path().join(RECORDS_FILE)).expect("read");
        let cut = &full[..full.len() - 40];
        std::fs::write(src.path().join(RECORDS_FILE), cut).expect("write");
        let e = convert(src.path(), &placement(src.path()), &out.path().join("d"))
            .expect_err("a truncated line");
        assert!(
            format!("{e:#}").contains("profile_export.jsonl: line 6"),
            "{e:#}"
        );

        // The input config must say the users.
        write_run(src.path(), &run(), &{
            let mut a = aggregate();
            a["input_config"]["phases"][0]
                .as_object_mut()
                .expect("phase")
                .remove("concurrency");
            a
        });
        let e = convert(src.path(), &placement(src.path()), &out.path().join("e"))
            .expect_err("no concurrency");
        assert!(
            format!("{e:#}").contains("profile_export_aiperf.json: field `input_config.phases[kind=profiling].concurrency` is missing"),
            "{e:#}"
        );
    }

    #[test]
    fn a_warm_up_request_sent_after_profiling_began_is_refused() {
        let src = tempfile::tempdir().expect("tempdir");
        let mut records = run();
        records.push(record("warmup", "c", 0, 2.5, 2.6));
        write_run(src.path(), &records, &aggregate());
        let out = tempfile::tempdir().expect("tempdir");
        let e = convert(src.path(), &placement(src.path()), &out.path().join("c"))
            .expect_err("overlapping phases");
        assert!(
            format!("{e:#}").contains(
                "a warm-up request (conversation trace_c, turn 0) was sent after profiling began"
            ),
            "{e:#}"
        );
    }
}
