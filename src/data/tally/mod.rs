//! A run's figures as a pure tally: finished requests in, `summary.json` and `periods.csv` rows
//! out. No file, no clock, no progress line: the replay's collector feeds it as requests finish
//! and writes what it returns; `collect` feeds it an AIPerf run's records, so both tools' points
//! come from one definition of every figure.
//!
//! Each request costs O(its output tokens) (one histogram entry per inter-token gap) and
//! nothing per request seen before it, so the tally keeps up with the replay's hot path.

mod window;

use hdrhistogram::Histogram;

use crate::base::workload::control::ControlArgs;
use crate::data::artifact::schema::{
    CacheUse, EndpointSummary, Goodput, JsonArtifact, Outcome, PeriodRow, RequestCounts,
    RequestRow, Summary, Throughput, summary_definitions,
};
use window::{Window, quantile_ms, quantiles};

/// One finished request, as it was measured.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub id: u64,
    pub user: u32,
    pub session: String,
    pub index: u32,
    /// Index into the run's endpoints (`--url`).
    pub endpoint: usize,
    /// Seconds from the run's start.
    pub scheduled_s: f64,
    /// When the last attempt was sent, after admission and any 429 back-off.
    pub sent_s: f64,
    /// Sends it took (more than one after 429s).
    pub attempts: u32,
    /// A session's first turn on its first replay: nothing of it should be cached.
    pub fresh: bool,
    pub done_s: f64,
    pub ttft_ms: Option<f64>,
    pub e2e_ms: f64,
    pub(crate) gaps_ms: Vec<f64>,
    pub trace_input_tokens: u32,
    pub trace_output_tokens: u32,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub cached_tokens: Option<u32>,
    pub outcome: Outcome,
    pub http_status: u16,
    pub error: String,
}

impl RequestRecord {
    /// Time per output token after the first, when the request produced at least two.
    pub fn tpot_ms(&self) -> Option<f64> {
        let out = self
            .completion_tokens
            .unwrap_or(self.gaps_ms.len() as u32 + 1);
        match (self.ttft_ms, out) {
            (Some(ttft), n) if n >= 2 => Some((self.e2e_ms - ttft) / f64::from(n - 1)),
            _ => None,
        }
    }

    /// How long the client held the request past its scheduled time (admission, back-off).
    pub fn schedule_delay_ms(&self) -> f64 {
        (self.sent_s - self.scheduled_s).max(0.0) * 1000.0
    }

    /// TTFT plus the time the client held the request (admission, back-off): what a user waits.
    pub fn effective_ttft_ms(&self) -> Option<f64> {
        self.ttft_ms.map(|t| t + self.schedule_delay_ms())
    }

    /// Its `requests.csv` row, judged against `slo`.
    pub fn row(&self, slo: &Slo) -> RequestRow {
        let gaps = &self.gaps_ms;
        RequestRow {
            request_id: self.id,
            user: self.user,
            session: self.session.clone(),
            request_index: self.index,
            scheduled_s: self.scheduled_s,
            sent_s: self.sent_s,
            done_s: self.done_s,
            schedule_delay_ms: self.schedule_delay_ms(),
            ttft_ms: self.ttft_ms,
            e2e_ms: self.e2e_ms,
            tpot_ms: self.tpot_ms(),
            itl_mean_ms: (!gaps.is_empty()).then(|| gaps.iter().sum::<f64>() / gaps.len() as f64),
            itl_max_ms: gaps.iter().copied().reduce(f64::max),
            trace_input_tokens: self.trace_input_tokens,
            trace_output_tokens: self.trace_output_tokens,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cached_tokens: self.cached_tokens,
            status: self.outcome,
            http_status: self.http_status,
            error: self.error.replace(['\n', '\r'], " "),
            endpoint: self.endpoint,
            attempts: self.attempts,
            effective_ttft_ms: self.effective_ttft_ms(),
            meets_slo: self.outcome == Outcome::Ok && slo.met_by(self),
            format_version: RequestRow::VERSION,
        }
    }
}

/// The service-level objectives goodput counts against (`--slo-ttft`, `--slo-decode-tps`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slo {
    /// Seconds to the first token, schedule delay included.
    ttft_s: f64,
    /// Output tokens per second one user sees (1000 / TPOT).
    pub(crate) decode_tps: f64,
}

impl Slo {
    pub fn of(control: &ControlArgs) -> Self {
        Self {
            ttft_s: control.slo_ttft,
            decode_tps: control.slo_decode_tps,
        }
    }

    /// Whether a request's effective TTFT and decode speed meet the objectives (a request of
    /// one output token has no decode speed, and meets that half).
    pub fn meets(&self, effective_ttft_ms: Option<f64>, tpot_ms: Option<f64>) -> bool {
        effective_ttft_ms.is_some_and(|t| t <= self.ttft_s * 1000.0)
            && tpot_ms.is_none_or(|t| t <= 0.0 || 1000.0 / t >= self.decode_tps)
    }

    fn met_by(&self, r: &RequestRecord) -> bool {
        self.meets(r.effective_ttft_ms(), r.tpot_ms())
    }
}

/// A closed assessment period, for the adaptive controller.
pub(crate) struct ClosedPeriod {
    pub index: u32,
    pub ttft: Histogram<u64>,
    pub(crate) decode_tps_sum: f64,
    pub(crate) decode_n: u64,
}

/// What the progress line shows: the run's figures so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub requests: u64,
    pub errors: u64,
    pub ttft_p50_ms: f64,
    pub hit_rate: f64,
}

/// Sessions' first turns on their first replay, and the prompt tokens the server found cached
/// in them: a cache left warm by an earlier run shows here.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FirstTurns {
    pub sessions: u64,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
}

/// The running figures of one run.
pub struct Tally {
    engine: String,
    slo: Slo,
    /// Requests sent before this (seconds from the start) stay out of the run's figures.
    warmup_window_s: f64,
    warmup_requests: u64,
    run: Window,
    period: Window,
    /// Per endpoint, when there are several: its URL, the run's and the period's windows.
    endpoints: Vec<(String, Window, Window)>,
    period_index: u32,
    period_start_s: f64,
    first_turns: FirstTurns,
    attempts: u64,
}

impl Tally {
    /// A tally of a run on `engine` over `endpoints` (per-endpoint figures when more than one).
    pub fn new(engine: &str, endpoints: &[String], slo: Slo, warmup_window_s: f64) -> Self {
        let endpoints = if endpoints.len() > 1 {
            endpoints
                .iter()
                .map(|e| (e.clone(), Window::new(), Window::new()))
                .collect()
        } else {
            Vec::new()
        };
        Self {
            engine: engine.to_owned(),
            slo,
            warmup_window_s,
            warmup_requests: 0,
            run: Window::new(),
            period: Window::new(),
            endpoints,
            period_index: 0,
            period_start_s: 0.0,
            first_turns: FirstTurns::default(),
            attempts: 0,
        }
    }

    pub(crate) fn slo(&self) -> &Slo {
        &self.slo
    }

    /// Adds one finished request.
    pub fn add(&mut self, r: &RequestRecord) {
        self.attempts += u64::from(r.attempts);
        if r.fresh && r.outcome == Outcome::Ok {
            let f = &mut self.first_turns;
            f.sessions += 1;
            f.prompt_tokens += u64::from(r.prompt_tokens.unwrap_or(r.trace_input_tokens));
            f.cached_tokens += u64::from(r.cached_tokens.unwrap_or(0));
        }
        self.period.add(r, &self.slo);
        let warming = r.sent_s < self.warmup_window_s;
        if warming {
            self.warmup_requests += 1;
        } else {
            self.run.add(r, &self.slo);
        }
        if let Some((_, run, period)) = self.endpoints.get_mut(r.endpoint) {
            if !warming {
                run.add(r, &self.slo);
            }
            period.add(r, &self.slo);
        }
    }

    /// When the current period began, seconds from the start.
    pub(crate) fn period_start_s(&self) -> f64 {
        self.period_start_s
    }

    /// Closes the current period at `now_s`, with `users` active and the token buckets at
    /// `fill`: its `periods.csv` rows (all endpoints, then each of several) and what the
    /// adaptive controller judges. The next period starts at `now_s`.
    pub(crate) fn close_period(
        &mut self,
        now_s: f64,
        users: usize,
        fill: (Option<f64>, Option<f64>),
    ) -> (Vec<PeriodRow>, ClosedPeriod) {
        let span = (self.period_start_s, now_s);
        let row = |w: &Window, endpoint: &str| PeriodRow {
            itpm_fill: fill.0,
            otpm_fill: fill.1,
            endpoint: endpoint.to_owned(),
            ..w.period_row(self.period_index, span, users)
        };
        let mut rows = vec![row(&self.period, "all")];
        for (url, _, period) in &mut self.endpoints {
            rows.push(row(period, url));
            *period = Window::new();
        }
        let closed = std::mem::replace(&mut self.period, Window::new());
        let out = ClosedPeriod {
            index: self.period_index,
            ttft: closed.ttft,
            decode_tps_sum: closed.decode_tps_sum,
            decode_n: closed.decode_n,
        };
        self.period_index += 1;
        self.period_start_s = now_s;
        (rows, out)
    }

    pub fn progress(&self) -> Progress {
        Progress {
            requests: self.run.requests,
            errors: self.run.errors,
            ttft_p50_ms: quantile_ms(&self.run.ttft, 0.5).unwrap_or(0.0),
            hit_rate: self.run.hit_rate().unwrap_or(0.0),
        }
    }

    /// Share of the run's requests that failed.
    pub fn error_rate(&self) -> f64 {
        if self.run.requests == 0 {
            0.0
        } else {
            self.run.errors as f64 / self.run.requests as f64
        }
    }

    pub fn first_turns(&self) -> FirstTurns {
        self.first_turns
    }

    /// The run's figures after `duration_s` seconds, as `summary.json` holds them. What the
    /// records do not say is left empty for the caller: `adaptive`, `open_loop`,
    /// `requests.unsent_at_deadline` and `client_cpu`.
    pub fn summary(&self, duration_s: f64, completed: bool) -> Summary {
        let w = &self.run;
        let d = (duration_s - self.warmup_window_s).max(1e-9);
        let ok = w.ok();
        let endpoints = self
            .endpoints
            .iter()
            .map(|(url, w, _)| EndpointSummary {
                url: url.clone(),
                requests: w.requests,
                failed: w.errors,
                ttft_ms: quantiles(&w.ttft),
                cache_hit_rate: w.hit_rate(),
            })
            .collect();
        Summary {
            format_version: Summary::VERSION,
            engine: self.engine.clone(),
            simulated: self.engine == "sim",
            completed,
            duration_s,
            requests: RequestCounts {
                total: w.requests,
                ok,
                failed: w.errors,
                error_rate: self.error_rate(),
                rate_limited_resends: self.attempts.saturating_sub(w.requests),
                unsent_at_deadline: 0,
            },
            throughput: Throughput {
                requests_per_s: ok as f64 / d,
                input_tokens_per_s: w.prompt_tokens as f64 / d,
                output_tokens_per_s: w.output_tokens as f64 / d,
                total_tokens_per_s: (w.prompt_tokens + w.output_tokens) as f64 / d,
            },
            ttft_ms: quantiles(&w.ttft),
            effective_ttft_ms: quantiles(&w.effective_ttft),
            itl_ms: quantiles(&w.itl),
            tpot_ms: quantiles(&w.tpot),
            e2e_ms: quantiles(&w.e2e),
            interactivity_tokens_per_s: w.interactivity(),
            schedule_delay_ms: quantiles(&w.schedule_delay),
            cache: CacheUse {
                prompt_tokens: w.prompt_tokens,
                cached_tokens: w.cached_tokens,
                hit_rate: w.hit_rate(),
            },
            goodput: Goodput {
                slo_ttft_s: self.slo.ttft_s,
                slo_decode_tps: self.slo.decode_tps,
                good_requests: w.good,
                requests_per_s: w.good as f64 / d,
                output_tokens_per_s: w.good_output_tokens as f64 / d,
                fraction: (ok > 0).then(|| w.good as f64 / ok as f64),
            },
            adaptive: None,
            open_loop: None,
            endpoints,
            warmup_window_s: self.warmup_window_s,
            warmup_requests: self.warmup_requests,
            client_cpu: Default::default(),
            definitions: summary_definitions(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLO: Slo = Slo {
        ttft_s: 1.0,
        decode_tps: 10.0,
    };

    /// A successful request sent at `sent_s` with TTFT `ttft_ms` and 5 output tokens 20 ms
    /// apart (50 tokens/s), to `endpoint`.
    fn ok(id: u64, sent_s: f64, ttft_ms: f64, endpoint: usize) -> RequestRecord {
        RequestRecord {
            id,
            user: 0,
            session: format!("s{id}"),
            index: 0,
            endpoint,
            scheduled_s: sent_s,
            sent_s,
            attempts: 1,
            fresh: false,
            done_s: sent_s + 1.0,
            ttft_ms: Some(ttft_ms),
            e2e_ms: ttft_ms + 80.0,
            gaps_ms: vec![20.0; 4],
            trace_input_tokens: 100,
            trace_output_tokens: 5,
            prompt_tokens: Some(100),
            completion_tokens: Some(5),
            cached_tokens: Some(25),
            outcome: Outcome::Ok,
            http_status: 200,
            error: String::new(),
        }
    }

    #[test]
    fn the_summary_counts_what_was_sent_after_the_warm_up_window() {
        let mut t = Tally::new("sim", &[], SLO, 2.0);
        t.add(&ok(0, 1.0, 100.0, 0)); // in the warm-up window
        t.add(&ok(1, 3.0, 100.0, 0));
        t.add(&ok(2, 4.0, 3000.0, 0)); // over the TTFT objective
        let failed = RequestRecord {
            outcome: Outcome::Error,
            attempts: 3,
            ..ok(3, 5.0, 0.0, 0)
        };
        t.add(&failed);
        let s = t.summary(12.0, true);
        assert_eq!(
            (s.requests.total, s.requests.ok, s.requests.failed),
            (3, 2, 1)
        );
        assert_eq!(
            s.requests.rate_limited_resends,
            6 - 3,
            "attempts past the first"
        );
        assert_eq!(s.warmup_requests, 1);
        assert!(s.simulated && s.completed);
        // Rates over the run less the window.
        assert!((s.throughput.requests_per_s - 2.0 / 10.0).abs() < 1e-9);
        assert_eq!((s.cache.prompt_tokens, s.cache.cached_tokens), (200, 50));
        assert_eq!(s.cache.hit_rate, Some(0.25));
        assert_eq!(s.goodput.good_requests, 1);
        assert_eq!(s.goodput.fraction, Some(0.5));
        assert_eq!(s.itl_ms.count, 8, "every gap of every successful request");
        assert!((s.tpot_ms.p50.expect("p50") - 20.0).abs() < 0.1);
        assert!((s.interactivity_tokens_per_s.p50.expect("p50") - 50.0).abs() < 0.1);
        assert!(s.adaptive.is_none() && s.open_loop.is_none());
        // The same records give the same rows: the row says whether the SLO was met.
        assert!(ok(1, 3.0, 100.0, 0).row(&SLO).meets_slo);
        assert!(!ok(2, 4.0, 3000.0, 0).row(&SLO).meets_slo);
        assert!(!failed.row(&SLO).meets_slo);
    }

    #[test]
    fn a_closed_period_has_a_row_for_all_and_one_per_endpoint_and_the_next_starts_empty() {
        let urls = ["http://a".to_owned(), "http://b".to_owned()];
        let mut t = Tally::new("vllm", &urls, SLO, 0.0);
        t.add(&ok(0, 0.5, 100.0, 0));
        t.add(&ok(1, 0.6, 300.0, 1));
        t.add(&ok(2, 0.7, 200.0, 1));
        let (rows, closed) = t.close_period(2.0, 3, (Some(0.5), None));
        let endpoints: Vec<&str> = rows.iter().map(|r| r.endpoint.as_str()).collect();
        assert_eq!(endpoints, ["all", "http://a", "http://b"]);
        assert_eq!(
            rows.iter().map(|r| r.requests).collect::<Vec<_>>(),
            [3, 1, 2]
        );
        assert!(
            rows.iter()
                .all(|r| r.itpm_fill == Some(0.5) && r.users == 3)
        );
        assert!((rows[0].requests_per_s - 1.5).abs() < 1e-9);
        assert_eq!(
            (closed.index, closed.ttft.len(), closed.decode_n),
            (0, 3, 3)
        );
        assert_eq!(t.period_start_s(), 2.0);
        let (rows, closed) = t.close_period(4.0, 3, (None, None));
        assert_eq!((rows[0].period, rows[0].requests, closed.index), (1, 0, 1));
        assert_eq!(
            (rows[0].ttft_p50_ms, rows[0].goodput_fraction),
            (None, None)
        );
        // The run's figures span both periods, per endpoint too.
        let s = t.summary(4.0, false);
        assert_eq!(
            s.endpoints.iter().map(|e| e.requests).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(t.progress().requests, 3);
    }

    #[test]
    fn first_turns_count_the_cache_they_found() {
        let mut t = Tally::new("vllm", &[], SLO, 0.0);
        t.add(&RequestRecord {
            fresh: true,
            ..ok(0, 0.0, 10.0, 0)
        });
        t.add(&ok(1, 0.0, 10.0, 0));
        assert_eq!(
            t.first_turns(),
            FirstTurns {
                sessions: 1,
                prompt_tokens: 100,
                cached_tokens: 25
            }
        );
    }
}
