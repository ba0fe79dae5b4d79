//! InferenceX's AgentX metrics, computed the way InferenceX computes them so a kvsweep cell
//! and a published AgentX result can be compared figure for figure:
//!
//! - E2E-normalized interactivity (InferenceX `MODELS.md`, "E2E normalized interactivity and
//!   Pareto-frontier policy"; `utils/agentic/aggregation/request_metrics.py`,
//!   `_e2e_normalized_interactivity_stats`): per successful request `r_i = E2EL_i / OSL_i`
//!   (seconds per output token, requests with a non-positive E2EL or OSL left out), and
//!   `1 / percentile_q({r_i})`: the percentile is taken in seconds per token *before* inverting,
//!   so P90 is the slow tail.
//! - Per-GPU input, output and total throughput (`request_metrics.py`,
//!   `compute_throughput_stats`, and `process_agentic_result.py`, `build_agg`): the tokens of
//!   the profiled requests over the span from the first request's start to the last one's end,
//!   divided by the GPU count, which for a single-node run is `TP × PP × PCP` (`_gpu_shape`);
//!   a kvsweep cell runs one node with PP = PCP = 1, so its GPU count is its TP.
//! - The North Star frontier policy (`MODELS.md`, "North-star Pareto policy"): a point is on a
//!   frontier only if it is also on the frontier of the same metric against E2E-normalized
//!   interactivity P90 in the same comparison group.
//!
//! Percentiles interpolate linearly between closest ranks, as `aggregation_common.percentile`.

use anyhow::Result;

use super::cells::CellResult;
use super::panels::Panel;
use super::result::Metric;
use crate::data::artifact::schema::{Outcome, RequestRow, read_csv_rows};
use crate::results::pareto::{self, Better};

/// The North Star x-axis: E2E-normalized interactivity P90.
const NORTH_STAR: Metric = Metric::E2eNormIntvtyP90;

/// E2E-normalized interactivity at the percentiles the summary reports, output tokens/s/user.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct E2eNormInteractivity {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

/// Per-GPU throughput as InferenceX computes it, tokens/s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PerGpuThroughput {
    pub input: f64,
    pub output: f64,
    pub total: f64,
}

/// The linear-interpolation percentile of InferenceX's `aggregation_common.percentile`
/// (`p` in 0..=100); `None` for no values.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let last = sorted.len().checked_sub(1)?;
    let k = last as f64 * (p / 100.0);
    let f = k.floor() as usize;
    let Some(&next) = sorted.get(f + 1) else {
        return Some(sorted[f]);
    };
    Some(sorted[f] + (k - f as f64) * (next - sorted[f]))
}

/// E2E-normalized interactivity of `(e2e_ms, output_tokens)` pairs; `None` when no pair has a
/// positive, finite latency and output length (such a run has no canonical frontier point).
fn e2e_norm_interactivity(requests: &[(f64, f64)]) -> Option<E2eNormInteractivity> {
    let seconds_per_token: Vec<f64> = requests
        .iter()
        .filter(|(e2e_ms, osl)| {
            e2e_ms.is_finite() && osl.is_finite() && *e2e_ms > 0.0 && *osl > 0.0
        })
        .map(|(e2e_ms, osl)| e2e_ms / 1000.0 / osl)
        .collect();
    let at = |p: f64| percentile(&seconds_per_token, p).map(|r| 1.0 / r);
    Some(E2eNormInteractivity {
        p50: at(50.0)?,
        p90: at(90.0)?,
        p99: at(99.0)?,
    })
}

/// A kvsweep cell's GPU count as InferenceX's `_gpu_shape` counts a single-node run:
/// `TP × PP × PCP`, with PP = PCP = 1 (kvsweep does not run pipeline or context parallelism).
pub(crate) fn gpu_count(tp: u32) -> u32 {
    tp.max(1)
}

/// Per-GPU throughput of `(start_s, end_s, input_tokens, output_tokens)` requests: token sums
/// over `max(end) − min(start)`, divided by `gpus`; `None` for no requests or an empty span.
fn per_gpu_throughput(requests: &[(f64, f64, f64, f64)], gpus: u32) -> Option<PerGpuThroughput> {
    let start = requests.iter().map(|r| r.0).reduce(f64::min)?;
    let end = requests.iter().map(|r| r.1).reduce(f64::max)?;
    let span = end - start;
    if span.is_nan() || span <= 0.0 {
        return None;
    }
    let input: f64 = requests.iter().map(|r| r.2).sum();
    let output: f64 = requests.iter().map(|r| r.3).sum();
    let per = |tokens: f64| tokens / span / f64::from(gpus.max(1));
    Some(PerGpuThroughput {
        input: per(input),
        output: per(output),
        total: per(input + output),
    })
}

/// Fills the cell's InferenceX columns from its `requests.csv`: the successful requests (AIPerf
/// exports carry metrics only for those) of the profiling window, sent after the warm-up window
/// (InferenceX aggregates AIPerf's profiling phase only). Token counts are the server's where it reported
/// them, else the trace's. A cell without `requests.csv` keeps the columns empty.
pub fn fill(c: &mut CellResult) -> Result<()> {
    let path = c.dir.join(RequestRow::FILE);
    if !path.exists() {
        return Ok(());
    }
    let rows = read_csv_rows(
        &path,
        |r: &RequestRow| r.format_version,
        RequestRow::VERSION,
    )?;
    let ok: Vec<&RequestRow> = rows
        .iter()
        .filter(|r| r.status == Outcome::Ok && r.sent_s >= c.warmup_window_s)
        .collect();
    let output_tokens =
        |r: &RequestRow| f64::from(r.completion_tokens.unwrap_or(r.trace_output_tokens));
    let input_tokens = |r: &RequestRow| f64::from(r.prompt_tokens.unwrap_or(r.trace_input_tokens));
    let latency: Vec<(f64, f64)> = ok.iter().map(|r| (r.e2e_ms, output_tokens(r))).collect();
    if let Some(e) = e2e_norm_interactivity(&latency) {
        c.agentx.e2e_norm_intvty_p50 = Some(e.p50);
        c.agentx.e2e_norm_intvty_p90 = Some(e.p90);
        c.agentx.e2e_norm_intvty_p99 = Some(e.p99);
    }
    let spans: Vec<(f64, f64, f64, f64)> = ok
        .iter()
        .map(|r| (r.sent_s, r.done_s, input_tokens(r), output_tokens(r)))
        .collect();
    if let Some(t) = per_gpu_throughput(&spans, gpu_count(c.config.tp)) {
        c.agentx.input_tps_per_gpu = Some(t.input);
        c.agentx.output_tps_per_gpu = Some(t.output);
        c.agentx.total_tps_per_gpu = Some(t.total);
    }
    Ok(())
}

/// The metric a panel compares against latency, and which way it improves: InferenceX draws
/// every AgentX metric against an interactivity x-axis, so a panel with a throughput on x
/// (kvsweep's throughput-vs-latency panels) compares that throughput, and one with
/// interactivity on x compares its y.
fn panel_metric(panel: &Panel) -> (Metric, Better) {
    use Metric::*;
    let throughput_on_x = matches!(
        panel.x,
        InputTpsPerGpu
            | OutputTpsPerGpu
            | TotalTpsPerGpu
            | AgentxInputTpsPerGpu
            | AgentxOutputTpsPerGpu
            | AgentxTotalTpsPerGpu
    );
    if throughput_on_x {
        (panel.x, Better::Higher)
    } else {
        (panel.y, panel.better)
    }
}

/// Applies the North Star policy to one panel's frontier over `cells` (one comparison group):
/// `on[i]` stays true only if cell `i` is also on the frontier of the panel's metric against
/// E2E-normalized interactivity P90 among the group's valid cells. A cell without that figure
/// (or an invalid one) cannot be a North Star winner;
/// a group where no cell has it (cells without per-request records) keeps its frontier as is.
pub(crate) fn north_star(panel: &Panel, cells: &[&CellResult], on: &mut [bool]) {
    let (metric, better) = panel_metric(panel);
    let points: Vec<Option<(f64, f64)>> = cells
        .iter()
        .map(|c| {
            if !c.valid {
                return None;
            }
            Some((NORTH_STAR.of(c)?, metric.of(c)?)).filter(|(x, y)| x.is_finite() && y.is_finite())
        })
        .collect();
    let placed: Vec<(f64, f64)> = points.iter().flatten().copied().collect();
    if placed.is_empty() {
        return;
    }
    let mut winners = pareto::frontier(&placed, better).into_iter();
    for (on, point) in on.iter_mut().zip(&points) {
        let winner = point.is_some() && winners.next().unwrap_or(false);
        *on = *on && winner;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn percentile_interpolates_between_closest_ranks() {
        // k = (5 − 1) × 0.9 = 3.6: 4 + 0.6 × (10 − 4).
        let v = [10.0, 1.0, 3.0, 2.0, 4.0];
        assert!(close(percentile(&v, 90.0).unwrap(), 7.6));
        assert!(close(percentile(&v, 50.0).unwrap(), 3.0));
        assert!(close(percentile(&v, 100.0).unwrap(), 10.0));
        assert!(close(percentile(&[5.0], 99.0).unwrap(), 5.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn e2e_norm_interactivity_inverts_the_percentile_of_seconds_per_token() {
        // Seconds per output token: 1 s / 100 = 0.01, 2 s / 100 = 0.02, 1 s / 10 = 0.1,
        // 3 s / 60 = 0.05; the zero-output and zero-latency requests are left out.
        let requests = [
            (1000.0, 100.0),
            (2000.0, 100.0),
            (1000.0, 10.0),
            (3000.0, 60.0),
            (500.0, 0.0),
            (0.0, 20.0),
        ];
        let e = e2e_norm_interactivity(&requests).unwrap();
        // Sorted 0.01, 0.02, 0.05, 0.1. P50: k = 1.5 → 0.035. P90: k = 2.7 → 0.05 + 0.7 × 0.05
        // = 0.085. P99: k = 2.97 → 0.05 + 0.97 × 0.05 = 0.0985.
        assert!(close(e.p50, 1.0 / 0.035), "{e:?}");
        assert!(close(e.p90, 1.0 / 0.085), "{e:?}");
        assert!(close(e.p99, 1.0 / 0.0985), "{e:?}");
        // Not the ratio of separately aggregated percentiles: P50 OSL / P50 E2EL would be
        // 80 / 1.5 s = 53.3, not 28.6.
        assert!(e.p50 < 30.0);
        assert_eq!(e2e_norm_interactivity(&[(100.0, 0.0)]), None);
    }

    #[test]
    fn per_gpu_throughput_spans_first_start_to_last_end() {
        // Starts at 1 s and 2 s, ends at 3 s and 5 s: a 4 s span; 300 + 500 input and
        // 20 + 60 output tokens; 2 GPUs.
        let requests = [(1.0, 3.0, 300.0, 20.0), (2.0, 5.0, 500.0, 60.0)];
        let t = per_gpu_throughput(&requests, gpu_count(2)).unwrap();
        assert!(close(t.input, 800.0 / 4.0 / 2.0), "{t:?}");
        assert!(close(t.output, 80.0 / 4.0 / 2.0), "{t:?}");
        assert!(close(t.total, 880.0 / 4.0 / 2.0), "{t:?}");
        assert_eq!(per_gpu_throughput(&[], 1), None);
        assert_eq!(per_gpu_throughput(&[(1.0, 1.0, 5.0, 5.0)], 1), None);
        assert_eq!(gpu_count(0), 1);
        assert_eq!(gpu_count(8), 8);
    }
}
