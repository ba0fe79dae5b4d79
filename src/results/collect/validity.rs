//! A cell's validity verdict: whether its figures are a trustworthy point, and if not, why.
//!
//! A point is invalid when it is too thin (too few completed requests, overall or per user),
//! when too many requests failed or overflowed the context, when the run was stopped, when the
//! client rather than the server set the pace (schedule delay, client CPU), when the server
//! never settled (throughput of the last third of the measured window far from the middle
//! third's), or when an open-loop run over-saturated the server (requests in flight and TTFT
//! both rising). Invalid points stay in the tables and plots, marked, and are never on a
//! frontier. Thresholds: [`ValidityThresholds`] (the spec's `validity:`).

use crate::base::validity::ValidityThresholds;
use crate::data::artifact::schema::{CellPlan, CellState, Outcome, RequestRow, Status, Summary};

/// Whether a cell is a trustworthy point, with every reason it is not.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub reasons: Vec<String>,
}

impl Verdict {
    pub fn valid(&self) -> bool {
        self.reasons.is_empty()
    }
}

/// The parts of a cell's artifacts a verdict reads.
pub struct Evidence<'a> {
    pub plan: &'a CellPlan,
    pub status: &'a Status,
    pub summary: &'a Summary,
    pub requests: &'a [RequestRow],
}

/// Judges a cell against `plan.validity`.
pub fn judge(e: &Evidence<'_>) -> Verdict {
    let t = &e.plan.validity;
    let s = e.summary;
    let mut reasons = Vec::new();
    if e.status.status != CellState::Ok {
        reasons.push(format!(
            "run stopped early (status {}: {})",
            e.status.status.as_str(),
            e.status.reason
        ));
    }
    let ok = s.requests.ok;
    let users = f64::from(e.plan.cell.users.max(1));
    let per_user_floor = (t.min_requests_per_user * users).ceil() as u64;
    if ok < t.min_requests || ok < per_user_floor {
        reasons.push(format!(
            "{ok} completed requests (fewer than {} overall or {} per user)",
            t.min_requests, t.min_requests_per_user
        ));
    }
    if s.requests.error_rate > t.max_error_rate {
        reasons.push(format!(
            "{:.1} % of requests failed (more than {:.1} %)",
            s.requests.error_rate * 100.0,
            t.max_error_rate * 100.0
        ));
    }
    let measured: Vec<&RequestRow> = e
        .requests
        .iter()
        .filter(|r| r.sent_s >= s.warmup_window_s)
        .collect();
    let overflow = measured.iter().filter(|r| is_context_overflow(r)).count();
    let overflow_rate = overflow as f64 / measured.len().max(1) as f64;
    if overflow_rate > t.max_context_overflow_rate {
        reasons.push(format!(
            "{:.1} % of requests overflowed the context (more than {:.1} %)",
            overflow_rate * 100.0,
            t.max_context_overflow_rate * 100.0
        ));
    }
    if let Some(p99) = s.schedule_delay_ms.p99
        && p99 > t.max_schedule_delay_p99_ms
    {
        reasons.push(format!(
            "client-bound: schedule delay p99 {p99:.0} ms (more than {:.0} ms)",
            t.max_schedule_delay_p99_ms
        ));
    }
    if s.client_cpu.demand > t.max_client_cpu {
        reasons.push(format!(
            "client-bound: the replay wanted {:.0} % of its {} cores (more than {:.0} %)",
            s.client_cpu.demand * 100.0,
            s.client_cpu.cores,
            t.max_client_cpu * 100.0
        ));
    }
    let window = Window::of(e);
    if let Some(reason) = unsteady(&measured, window, t) {
        reasons.push(reason);
    }
    if s.open_loop.is_some()
        && let Some(reason) = over_saturated(&measured, window, t)
    {
        reasons.push(reason);
    }
    Verdict { reasons }
}

/// An error the server gave for a prompt longer than its context (vLLM's and the simulator's
/// "maximum context length" message, SGLang's and llama.cpp's "context length"/"context size").
fn is_context_overflow(r: &RequestRow) -> bool {
    if r.status == Outcome::Ok {
        return false;
    }
    let e = r.error.to_ascii_lowercase();
    e.contains("context length") || e.contains("context size") || e.contains("context window")
}

/// The measured window: from the end of the warm-up to the end of the sending (the drain that
/// follows is not part of the load the cell asked for).
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start_s: f64,
    pub end_s: f64,
}

impl Window {
    fn of(e: &Evidence<'_>) -> Self {
        let planned = e.plan.duration_s as f64;
        let end_s = if planned > 0.0 {
            planned.min(e.summary.duration_s)
        } else {
            e.summary.duration_s
        };
        Self {
            start_s: e.summary.warmup_window_s.min(end_s),
            end_s,
        }
    }

    /// The middle and the last third.
    fn thirds(self) -> [(f64, f64); 2] {
        let third = (self.end_s - self.start_s) / 3.0;
        [
            (self.start_s + third, self.start_s + 2.0 * third),
            (self.start_s + 2.0 * third, self.end_s),
        ]
    }
}

/// Why the server never reached a steady state: completed requests in the last third differ
/// from the middle third by more than the threshold's share and by more than counting noise
/// (two standard deviations of a Poisson count difference, `2 √(n₂ + n₃)`), so a thin cell's
/// luck is not called a trend.
fn unsteady(rows: &[&RequestRow], w: Window, t: &ValidityThresholds) -> Option<String> {
    let [mid, last] = w.thirds();
    let done_in = |(lo, hi): (f64, f64)| {
        rows.iter()
            .filter(|r| r.status == Outcome::Ok && r.done_s >= lo && r.done_s < hi)
            .count() as f64
    };
    let (n2, n3) = (done_in(mid), done_in(last));
    let change = (n3 - n2).abs();
    let noisy = change <= 2.0 * (n2 + n3).sqrt();
    (n2 > 0.0 && change > t.max_steady_state_change * n2 && !noisy).then(|| {
        format!(
            "no steady state: {n3} requests completed in the last third of the window against {n2} in the middle third (a change of more than {:.0} %)",
            t.max_steady_state_change * 100.0
        )
    })
}

/// Why an open-loop run over-saturated the server: requests in flight (time-averaged) and the
/// TTFT median both rose from the middle third to the last by more than their thresholds. A
/// closed-loop run's queue is bounded by its users, so only open-loop runs are judged here.
fn over_saturated(rows: &[&RequestRow], w: Window, t: &ValidityThresholds) -> Option<String> {
    let [mid, last] = w.thirds();
    let in_flight = |(lo, hi): (f64, f64)| {
        let busy: f64 = rows
            .iter()
            .map(|r| (r.done_s.min(hi) - r.sent_s.max(lo)).max(0.0))
            .sum();
        busy / (hi - lo).max(1e-9)
    };
    let ttft_median = |(lo, hi): (f64, f64)| {
        let mut v: Vec<f64> = rows
            .iter()
            .filter(|r| r.sent_s >= lo && r.sent_s < hi)
            .filter_map(|r| r.ttft_ms)
            .collect();
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then(|| crate::base::stats::percentile(&v, 50.0))
    };
    let (q2, q3) = (in_flight(mid), in_flight(last));
    let (t2, t3) = (ttft_median(mid)?, ttft_median(last)?);
    (q2 > 0.0 && q3 > t.max_in_flight_growth * q2 && t3 > t.max_ttft_growth * t2.max(1e-9)).then(
        || {
            format!(
                "over-saturated: requests in flight rose from {q2:.1} to {q3:.1} and the TTFT median from {t2:.0} to {t3:.0} ms between the middle and the last third"
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sent_s: f64, done_s: f64, ttft_ms: f64) -> RequestRow {
        RequestRow {
            request_id: 0,
            user: 0,
            session: "s".into(),
            request_index: 0,
            scheduled_s: sent_s,
            sent_s,
            done_s,
            schedule_delay_ms: 0.0,
            ttft_ms: Some(ttft_ms),
            e2e_ms: (done_s - sent_s) * 1000.0,
            tpot_ms: None,
            itl_mean_ms: None,
            itl_max_ms: None,
            trace_input_tokens: 10,
            trace_output_tokens: 10,
            prompt_tokens: Some(10),
            completion_tokens: Some(10),
            cached_tokens: Some(0),
            status: Outcome::Ok,
            http_status: 200,
            error: String::new(),
            endpoint: 0,
            attempts: 1,
            effective_ttft_ms: Some(ttft_ms),
            meets_slo: true,
            format_version: RequestRow::VERSION,
        }
    }

    const W: Window = Window {
        start_s: 0.0,
        end_s: 30.0,
    };

    /// One request completing every `gap` seconds over [from, to).
    fn steady(from: f64, to: f64, gap: f64) -> Vec<RequestRow> {
        let mut v = Vec::new();
        let mut t = from;
        while t < to {
            v.push(row(t, t + 0.5 * gap, 10.0));
            t += gap;
        }
        v
    }

    #[test]
    fn an_even_rate_is_steady_and_a_halved_one_is_not() {
        let t = ValidityThresholds::default();
        let even = steady(0.0, 30.0, 0.1);
        let refs: Vec<&RequestRow> = even.iter().collect();
        assert_eq!(unsteady(&refs, W, &t), None);
        // 100 per 10 s in the middle, 30 in the last: far past 50 % and counting noise.
        let mut slowing = steady(0.0, 20.0, 0.1);
        slowing.extend(steady(20.0, 30.0, 0.333));
        let refs: Vec<&RequestRow> = slowing.iter().collect();
        let why = unsteady(&refs, W, &t).expect("unsteady");
        assert!(why.contains("no steady state"), "{why}");
    }

    #[test]
    fn a_thin_change_within_counting_noise_is_not_called_unsteady() {
        let t = ValidityThresholds::default();
        // 4 then 8 completions: +100 %, but 4 < 2 √12.
        let mut rows = steady(10.0, 20.0, 2.5);
        rows.extend(steady(20.0, 30.0, 1.25));
        let refs: Vec<&RequestRow> = rows.iter().collect();
        assert_eq!(unsteady(&refs, W, &t), None);
    }

    #[test]
    fn a_growing_queue_with_rising_ttft_is_over_saturation() {
        let t = ValidityThresholds::default();
        // A request every 0.1 s whose time in flight grows with its send time.
        let growing: Vec<RequestRow> = (0..300)
            .map(|i| {
                let sent = f64::from(i) * 0.1;
                row(
                    sent,
                    sent + 0.02 * sent * sent + 0.1,
                    10.0 * sent * sent + 1.0,
                )
            })
            .collect();
        let refs: Vec<&RequestRow> = growing.iter().collect();
        let why = over_saturated(&refs, W, &t).expect("over-saturated");
        assert!(why.contains("over-saturated"), "{why}");
        let flat = steady(0.0, 30.0, 0.1);
        let refs: Vec<&RequestRow> = flat.iter().collect();
        assert_eq!(over_saturated(&refs, W, &t), None);
    }

    #[test]
    fn only_refusals_for_length_count_as_context_overflow() {
        let mut r = row(0.0, 1.0, 10.0);
        r.status = Outcome::Error;
        r.http_status = 400;
        r.error = "This model's maximum context length is 100 tokens.".into();
        assert!(is_context_overflow(&r));
        r.error = "connection reset".into();
        assert!(!is_context_overflow(&r));
    }
}
