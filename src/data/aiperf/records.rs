//! A kvsweep cell's `requests.csv` rows as `profile_export.jsonl` records.
//!
//! Each row becomes the record AIPerf writes for one request (`MetricRecordInfo`), with the
//! metrics InferenceX's processor reads under AIPerf's tags and units: `request_latency`,
//! `time_to_first_token`, `inter_token_latency` (AIPerf's `(latency − TTFT) / (OSL − 1)`, which
//! is kvsweep's `tpot_ms`), `input_sequence_length` and `output_sequence_length` (the server's
//! usage counts, as InferenceX runs AIPerf with `--use-server-token-count`; the trace's where
//! the server reported none), and the server's usage fields.

use std::collections::HashMap;

use indexmap::IndexMap;

use super::schema::CreditPhase;
use super::schema::record::{ErrorDetails, MetricValue, RecordInfo, RecordMetadata};
use crate::data::artifact::schema::{Outcome, RequestRow};

/// Where a cell's requests sit in wall-clock time and which ones were warm-up.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    /// Unix seconds of the replay's time zero (`requests.csv` times are seconds from it).
    pub(crate) start_unix_s: f64,
    /// Requests sent before this many seconds are the warm-up window's (`summary.json`).
    pub warmup_window_s: f64,
}

/// The worker and record-processor ids the records carry (AIPerf names its processes).
const PROCESS_ID: &str = "kvsweep-replay";

/// AIPerf's name for the conversation of kvsweep session `session`: kv-cache-tester subagents
/// (`trace/agent`) are `trace::sa:agent` in AIPerf's weka loader; other sessions keep their id.
pub fn conversation_id(session: &str) -> String {
    match session.split_once('/') {
        Some((root, agent)) => format!("{root}::sa:{}", agent.replace('/', "::sa:")),
        None => session.to_owned(),
    }
}

fn nanos(unix_s: f64) -> u64 {
    (unix_s * 1e9).round().max(0.0) as u64
}

/// The records of `rows`, sorted by send time. A session replayed again by the same user (a
/// recycled trace) is a new AIPerf session: it gets its own `session_num` and correlation id.
pub fn records(rows: &[RequestRow], timeline: Timeline) -> Vec<RecordInfo> {
    let mut sorted: Vec<&RequestRow> = rows.iter().collect();
    sorted.sort_by(|a, b| {
        a.sent_s
            .total_cmp(&b.sent_s)
            .then(a.request_id.cmp(&b.request_id))
    });
    // (user, session) → (its current play's session_num, the last request index it sent).
    let mut plays: HashMap<(u32, &str), (u64, u32)> = HashMap::new();
    let mut next_session = 0u64;
    sorted
        .into_iter()
        .map(|row| {
            let play = plays
                .entry((row.user, row.session.as_str()))
                .and_modify(|(num, last)| {
                    if row.request_index <= *last {
                        *num = next_session;
                        next_session += 1;
                    }
                    *last = row.request_index;
                })
                .or_insert_with(|| {
                    next_session += 1;
                    (next_session - 1, row.request_index)
                });
            record(row, play.0, timeline)
        })
        .collect()
}

fn record(row: &RequestRow, session_num: u64, timeline: Timeline) -> RecordInfo {
    let warmup = row.sent_s < timeline.warmup_window_s;
    let phase = if warmup {
        CreditPhase::Warmup
    } else {
        CreditPhase::Profiling
    };
    let depth = row.session.matches('/').count() as u32;
    let root = row.session.split('/').next().unwrap_or(&row.session);
    let metadata = RecordMetadata {
        session_num,
        x_request_id: Some(format!("kvsweep-{}", row.request_id)),
        x_correlation_id: Some(format!("kvsweep-session-{session_num}")),
        conversation_id: Some(conversation_id(&row.session)),
        turn_index: Some(u64::from(row.request_index)),
        source_trace_id: Some(root.to_owned()),
        source_outer_idx: None,
        source_inner_idx: None,
        source_kind: None,
        credit_issued_ns: Some(nanos(timeline.start_unix_s + row.scheduled_s)),
        request_start_ns: nanos(timeline.start_unix_s + row.sent_s),
        request_ack_ns: None,
        request_end_ns: nanos(timeline.start_unix_s + row.done_s),
        worker_id: PROCESS_ID.to_owned(),
        record_processor_id: PROCESS_ID.to_owned(),
        benchmark_phase: phase,
        phase_index: (!warmup).then_some(0),
        profiling_index: (!warmup).then_some(0),
        phase_name: Some(if warmup { "warmup" } else { "profiling" }.to_owned()),
        phase_kind: Some(phase),
        was_cancelled: false,
        cancellation_time_ns: None,
        context_overflow_skip: false,
        agent_depth: depth,
        parent_correlation_id: None,
        root_correlation_id: None,
    };
    let error = (row.status != Outcome::Ok).then(|| ErrorDetails {
        code: (row.http_status > 0).then_some(i64::from(row.http_status)),
        error_type: (row.status == Outcome::Timeout).then(|| "TimeoutError".to_owned()),
        message: if row.error.is_empty() {
            row.status.as_str().to_owned()
        } else {
            row.error.clone()
        },
        cause: None,
        cause_chain: None,
        details: None,
    });
    RecordInfo {
        metadata,
        metrics: if error.is_some() {
            IndexMap::new()
        } else {
            metrics(row)
        },
        error,
    }
}

/// The metrics of a successful request, AIPerf's tags and units.
fn metrics(row: &RequestRow) -> IndexMap<String, MetricValue> {
    let isl = row.prompt_tokens.unwrap_or(row.trace_input_tokens);
    let osl = row.completion_tokens.unwrap_or(row.trace_output_tokens);
    let mut m = IndexMap::new();
    let mut put = |tag: &str, value: MetricValue| {
        m.insert(tag.to_owned(), value);
    };
    put(
        "input_sequence_length",
        MetricValue::count(isl.into(), "tokens"),
    );
    put("request_latency", MetricValue::number(row.e2e_ms, "ms"));
    put(
        "output_sequence_length",
        MetricValue::count(osl.into(), "tokens"),
    );
    put(
        "output_token_count",
        MetricValue::count(osl.into(), "tokens"),
    );
    if let Some(ttft) = row.ttft_ms {
        put("time_to_first_token", MetricValue::number(ttft, "ms"));
    }
    if let Some(itl) = row.tpot_ms {
        put("inter_token_latency", MetricValue::number(itl, "ms"));
        if itl > 0.0 {
            put(
                "output_token_throughput_per_user",
                MetricValue::number(1000.0 / itl, "tokens/sec/user"),
            );
        }
    }
    for (tag, v) in [
        ("usage_prompt_tokens", row.prompt_tokens),
        ("usage_completion_tokens", row.completion_tokens),
        ("usage_prompt_cache_read_tokens", row.cached_tokens),
    ] {
        if let Some(v) = v {
            put(tag, MetricValue::count(v.into(), "tokens"));
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, user: u32, session: &str, index: u32, sent_s: f64) -> RequestRow {
        RequestRow {
            request_id: id,
            user,
            session: session.into(),
            request_index: index,
            scheduled_s: sent_s,
            sent_s,
            done_s: sent_s + 1.5,
            schedule_delay_ms: 0.0,
            ttft_ms: Some(100.0),
            e2e_ms: 1500.0,
            tpot_ms: Some(10.0),
            itl_mean_ms: Some(10.0),
            itl_max_ms: Some(20.0),
            trace_input_tokens: 1000,
            trace_output_tokens: 141,
            prompt_tokens: Some(1022),
            completion_tokens: Some(141),
            cached_tokens: Some(512),
            status: Outcome::Ok,
            http_status: 200,
            error: String::new(),
            endpoint: 0,
            attempts: 1,
            effective_ttft_ms: Some(100.0),
            meets_slo: true,
            format_version: RequestRow::VERSION,
        }
    }

    #[test]
    fn subagents_are_named_as_aiperf_names_them() {
        assert_eq!(conversation_id("trace_0277"), "trace_0277");
        assert_eq!(
            conversation_id("trace_0277/agent_004"),
            "trace_0277::sa:agent_004"
        );
    }

    #[test]
    fn rows_become_records_in_send_order_with_wall_clock_times_and_phases() {
        let mut failed = row(3, 0, "t", 1, 3.0);
        failed.status = Outcome::Error;
        failed.http_status = 400;
        failed.error = "maximum context length".into();
        let rows = [
            failed,
            row(1, 0, "t/agent_1", 0, 2.0),
            row(0, 0, "t", 0, 0.5),
            // The same user's trace again from its start: a new session.
            row(4, 0, "t", 0, 9.0),
        ];
        let r = records(
            &rows,
            Timeline {
                start_unix_s: 1000.0,
                warmup_window_s: 1.0,
            },
        );
        let ids: Vec<&str> = r
            .iter()
            .map(|r| r.metadata.x_request_id.as_deref().unwrap())
            .collect();
        assert_eq!(ids, ["kvsweep-0", "kvsweep-1", "kvsweep-3", "kvsweep-4"]);
        assert_eq!(r[0].metadata.benchmark_phase, CreditPhase::Warmup);
        assert_eq!(r[1].metadata.benchmark_phase, CreditPhase::Profiling);
        assert_eq!(r[0].metadata.request_start_ns, 1_000_500_000_000);
        assert_eq!(r[0].metadata.request_end_ns, 1_002_000_000_000);
        assert_eq!(r[1].metadata.agent_depth, 1);
        assert_eq!(
            r[1].metadata.conversation_id.as_deref(),
            Some("t::sa:agent_1")
        );
        // Session numbers: t (first play), t/agent_1, then t's second play.
        let sessions: Vec<u64> = r.iter().map(|r| r.metadata.session_num).collect();
        assert_eq!(sessions, [0, 1, 0, 2]);
        assert_eq!(r[0].metric("input_sequence_length"), Some(1022.0));
        assert_eq!(r[0].metric("output_sequence_length"), Some(141.0));
        assert_eq!(r[0].metric("inter_token_latency"), Some(10.0));
        assert_eq!(r[0].metric("usage_prompt_cache_read_tokens"), Some(512.0));
        let e = r[2].error.as_ref().expect("an error record");
        assert_eq!(
            (e.code, e.message.as_str()),
            (Some(400), "maximum context length")
        );
        assert!(r[2].metrics.is_empty());
    }
}
