//! InferenceX's AgentX metrics in `kvsweep collect` (collect::inferencex): E2E-normalized
//! interactivity and per-GPU throughput from each cell's `requests.csv`, checked against a hand
//! computation, and the North Star frontier policy in `pareto.csv`.

use crate::common;

use std::path::Path;

use common::cells::SyntheticCell;
use kvsweep::data::artifact::schema::{JsonArtifact, Outcome, RequestRow, Summary};

/// Writes `requests.csv` into `dir`: ten successful requests, request `i` sent at `i + 1` s and
/// done at `i + 3` s (a 1..12 s span), each of `e2e_ms` with 1000 prompt and `osl` completion
/// tokens; a failed request and a warm-up request (sent in the summary's 0.5 s warm-up window)
/// that would change every figure were they counted.
fn write_requests(dir: &Path, e2e_ms: f64, osl: u32) {
    let mut summary = Summary::read(dir).expect("summary.json");
    summary.warmup_window_s = 0.5;
    summary.write(dir).expect("summary.json");
    let row = |i: u32, status: Outcome| RequestRow {
        request_id: u64::from(i),
        user: i % 2,
        session: format!("s{}", i % 2),
        request_index: i / 2,
        scheduled_s: f64::from(i) + 1.0,
        sent_s: f64::from(i) + 1.0,
        done_s: f64::from(i) + 3.0,
        schedule_delay_ms: 0.0,
        ttft_ms: Some(100.0),
        e2e_ms,
        tpot_ms: Some(10.0),
        itl_mean_ms: Some(10.0),
        itl_max_ms: Some(20.0),
        trace_input_tokens: 900,
        trace_output_tokens: osl,
        prompt_tokens: Some(1000),
        completion_tokens: Some(osl),
        cached_tokens: Some(500),
        status,
        http_status: 200,
        error: String::new(),
        endpoint: 0,
        attempts: 1,
        effective_ttft_ms: Some(100.0),
        meets_slo: true,
        format_version: RequestRow::VERSION,
    };
    let mut w = csv::Writer::from_path(dir.join(RequestRow::FILE)).expect("requests.csv");
    for i in 0..10 {
        w.serialize(row(i, Outcome::Ok)).expect("a row");
    }
    let mut failed = row(10, Outcome::Error);
    failed.sent_s = 50.0;
    failed.done_s = 90.0;
    failed.e2e_ms = 1.0;
    failed.http_status = 500;
    failed.error = "boom".into();
    w.serialize(failed).expect("a row");
    let mut warming = row(11, Outcome::Ok);
    warming.scheduled_s = 0.0;
    warming.sent_s = 0.2;
    warming.done_s = 0.3;
    warming.e2e_ms = 100.0;
    warming.completion_tokens = Some(1);
    w.serialize(warming).expect("a row");
    w.flush().expect("flush");
}

#[test]
fn collect_reports_agentx_metrics_and_gates_frontiers_by_the_north_star() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cells = tmp.path().join("cells");
    // (users, tp, total tok/s, e2e ms per request, output tokens): seconds per output token
    // 0.02 (50 tok/s/user), 0.025 (40) and 1/45 (45). Per GPU total throughput: 2000, 4000
    // and 16000 / 2 = 8000. In E2E-normalized interactivity vs throughput the 4-user cell is
    // beaten by the 8-user one (45 > 40 and 8000 > 4000); in TTFT vs input throughput no cell
    // beats another (TTFT grows with users).
    for (users, tp, total_tps, e2e_ms, osl) in [
        (2, 1, 2000.0, 2000.0, 100),
        (4, 1, 4000.0, 2500.0, 100),
        (8, 2, 16000.0, 2000.0, 90),
    ] {
        let mut cell = SyntheticCell::new("h200", tp, users, "off");
        cell.total_tps = total_tps;
        let dir = cell.write(&cells);
        write_requests(&dir, e2e_ms, osl);
    }
    let out = tmp.path().join("out");
    common::kvsweep_ok(&[
        "collect",
        cells.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);

    let summary = common::csv_rows(&out.join("summary.csv"));
    let row = |users: &str| {
        summary
            .iter()
            .find(|r| r["users"] == users)
            .unwrap_or_else(|| panic!("{users}-user cell in {summary:?}"))
    };
    let num = |users: &str, col: &str| -> f64 { row(users)[col].parse().expect(col) };
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * b.abs().max(1.0);
    // Every request of a cell has the same seconds per token, so every percentile is it.
    for col in [
        "e2e_norm_intvty_p50",
        "e2e_norm_intvty_p90",
        "e2e_norm_intvty_p99",
    ] {
        assert!(close(num("2", col), 50.0), "{col}: {}", num("2", col));
        assert!(close(num("4", col), 40.0), "{col}: {}", num("4", col));
        assert!(close(num("8", col), 45.0), "{col}: {}", num("8", col));
    }
    // Ten requests of 1000 + 100 tokens over 11 s on one GPU; the 8-user cell: 1000 + 90
    // tokens each on two GPUs.
    assert!(close(num("2", "agentx_input_tps_per_gpu"), 10_000.0 / 11.0));
    assert!(close(num("2", "agentx_output_tps_per_gpu"), 1000.0 / 11.0));
    assert!(close(num("2", "agentx_total_tps_per_gpu"), 11_000.0 / 11.0));
    assert!(close(
        num("8", "agentx_input_tps_per_gpu"),
        10_000.0 / 11.0 / 2.0
    ));
    assert!(close(
        num("8", "agentx_output_tps_per_gpu"),
        900.0 / 11.0 / 2.0
    ));

    let pareto = common::csv_rows(&out.join("pareto.csv"));
    let on = |panel: &str, users: u32| {
        let cell = pareto
            .iter()
            .find(|r| {
                r["panel"] == panel
                    && r["group"] == "h200/off"
                    && r["cell"].ends_with(&format!("_users{users}_offloadoff"))
            })
            .unwrap_or_else(|| panic!("{panel} {users} in {pareto:?}"));
        cell["on_frontier"] == "true"
    };
    // The North Star panel itself: the 4-user cell is dominated.
    assert!(on("agentx_tput_vs_e2e_norm_intvty", 2));
    assert!(!on("agentx_tput_vs_e2e_norm_intvty", 4));
    assert!(on("agentx_tput_vs_e2e_norm_intvty", 8));
    // TTFT vs input throughput: all three are undominated there, but the 4-user cell is not a
    // North Star winner for input throughput, so it is off this frontier too.
    assert!(on("ttft_vs_input_tput", 2));
    assert!(!on("ttft_vs_input_tput", 4));
    assert!(on("ttft_vs_input_tput", 8));
}
