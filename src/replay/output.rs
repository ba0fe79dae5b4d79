//! The replay's result files, written as the run goes.
//!
//! One collector task receives every finished request. It appends a row to `requests.csv`, feeds
//! the run's and the current period's histograms, and every second flushes the CSV (whole rows
//! only: [`CsvLog`]); at the end of
//! each assessment period it appends a `periods.csv` row and rewrites `summary.json` (through a
//! temporary file, so a reader never sees half of one). A run killed at any moment therefore leaves
//! parseable files; `metadata.json` says `completed: false` until the end.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde_json::Value;

use crate::artifact::CsvLog;
use crate::artifact::schema::{
    CacheUse, EndpointSummary, Goodput, JsonArtifact, Quantiles, RequestCounts, RequestRow,
    Summary, Throughput, summary_definitions,
};

use super::client_cpu::CpuClock;
use super::control;
use crate::openai::client::Outcome;
use crate::workload::control::ControlArgs;

/// One finished request, as the collector sees it.
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
    pub gaps_ms: Vec<f64>,
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

    /// TTFT plus the time the client held the request (admission, back-off): what a user waits.
    pub fn effective_ttft_ms(&self) -> Option<f64> {
        self.ttft_ms
            .map(|t| t + (self.sent_s - self.scheduled_s).max(0.0) * 1000.0)
    }
}

pub const PERIOD_COLUMNS: &[&str] = &[
    "period",
    "start_s",
    "end_s",
    "users",
    "requests",
    "errors",
    "requests_per_s",
    "input_tokens_per_s",
    "output_tokens_per_s",
    "ttft_p50_ms",
    "ttft_p90_ms",
    "ttft_p99_ms",
    "itl_p50_ms",
    "itl_p99_ms",
    "tpot_mean_ms",
    "cache_hit_rate",
    "schedule_delay_p99_ms",
    "effective_ttft_p50_ms",
    "effective_ttft_p99_ms",
    "goodput_requests_per_s",
    "goodput_fraction",
    "itpm_fill",
    "otpm_fill",
    "endpoint",
];

/// Microsecond histograms up to an hour, three significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

fn record_ms(h: &mut Histogram<u64>, ms: f64) {
    let _ = h.record(((ms * 1000.0).round() as u64).clamp(1, 3_600_000_000));
}

fn quantiles(h: &Histogram<u64>) -> Quantiles {
    let ms = |us: u64| us as f64 / 1000.0;
    if h.is_empty() {
        return Quantiles::default();
    }
    Quantiles {
        count: h.len(),
        mean: Some(h.mean() / 1000.0),
        p50: Some(ms(h.value_at_quantile(0.5))),
        p90: Some(ms(h.value_at_quantile(0.9))),
        p95: Some(ms(h.value_at_quantile(0.95))),
        p99: Some(ms(h.value_at_quantile(0.99))),
        max: Some(ms(h.max())),
    }
}

/// Sums and histograms over a span of the run.
struct Window {
    requests: u64,
    errors: u64,
    prompt_tokens: u64,
    cached_tokens: u64,
    output_tokens: u64,
    ttft: Histogram<u64>,
    itl: Histogram<u64>,
    tpot: Histogram<u64>,
    e2e: Histogram<u64>,
    interactivity: Histogram<u64>,
    schedule_delay: Histogram<u64>,
    effective_ttft: Histogram<u64>,
    good: u64,
    good_output_tokens: u64,
    decode_tps_sum: f64,
    decode_n: u64,
}

impl Window {
    fn new() -> Self {
        Self {
            requests: 0,
            errors: 0,
            prompt_tokens: 0,
            cached_tokens: 0,
            output_tokens: 0,
            ttft: histogram(),
            itl: histogram(),
            tpot: histogram(),
            e2e: histogram(),
            interactivity: histogram(),
            schedule_delay: histogram(),
            effective_ttft: histogram(),
            good: 0,
            good_output_tokens: 0,
            decode_tps_sum: 0.0,
            decode_n: 0,
        }
    }

    fn add(&mut self, r: &RequestRecord, slo: &ControlArgs) {
        self.requests += 1;
        record_ms(
            &mut self.schedule_delay,
            (r.sent_s - r.scheduled_s).max(0.0) * 1000.0,
        );
        if r.outcome != Outcome::Ok {
            self.errors += 1;
            return;
        }
        self.prompt_tokens += u64::from(r.prompt_tokens.unwrap_or(r.trace_input_tokens));
        self.cached_tokens += u64::from(r.cached_tokens.unwrap_or(0));
        let output = u64::from(
            r.completion_tokens
                .unwrap_or(r.gaps_ms.len() as u32 + u32::from(r.ttft_ms.is_some())),
        );
        self.output_tokens += output;
        if let Some(t) = r.ttft_ms {
            record_ms(&mut self.ttft, t);
        }
        if let Some(t) = r.effective_ttft_ms() {
            record_ms(&mut self.effective_ttft, t);
        }
        if control::meets_slo(slo, r.effective_ttft_ms(), r.tpot_ms()) {
            self.good += 1;
            self.good_output_tokens += output;
        }
        for g in &r.gaps_ms {
            record_ms(&mut self.itl, *g);
        }
        if let Some(tpot) = r.tpot_ms().filter(|t| *t > 0.0) {
            record_ms(&mut self.tpot, tpot);
            self.decode_tps_sum += 1000.0 / tpot;
            self.decode_n += 1;
            // Interactivity is 1000 / TPOT: tokens per second one user sees. Stored ×1000 so the
            // histogram keeps its precision (it records integers).
            let _ = self
                .interactivity
                .record(((1000.0 / tpot) * 1000.0).round().max(1.0) as u64);
        }
        record_ms(&mut self.e2e, r.e2e_ms);
    }

    fn hit_rate(&self) -> Option<f64> {
        (self.prompt_tokens > 0).then(|| self.cached_tokens as f64 / self.prompt_tokens as f64)
    }
}

/// Writes `requests.csv`, `periods.csv` and `summary.json` into the output directory.
pub struct Collector {
    dir: PathBuf,
    requests: CsvLog,
    periods: CsvLog,
    run: Window,
    period: Window,
    /// Per endpoint, when there are several: the run's and the current period's windows.
    endpoints: Vec<(String, Window, Window)>,
    period_index: u32,
    period_start_s: f64,
    pub period_s: f64,
    engine: String,
    control: ControlArgs,
    /// Fresh first turns seen, with their prompt and cached tokens: a warm cache shows here.
    fresh: (u64, u64, u64),
    attempts: u64,
    adaptive: Option<Value>,
    open_loop: Option<Value>,
    /// Requests sent before this (seconds from the start) stay out of the run's figures.
    warmup_window_s: f64,
    warmup_requests: u64,
    /// Requests held by admission past the deadline, not sent (`Run::unsent_at_deadline`).
    unsent_at_deadline: u64,
    cpu: CpuClock,
}

/// A closed assessment period, for the adaptive controller.
pub struct ClosedPeriod {
    pub index: u32,
    pub ttft: Histogram<u64>,
    pub decode_tps_sum: f64,
    pub decode_n: u64,
}

/// What the progress line shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub requests: u64,
    pub errors: u64,
    pub ttft_p50_ms: f64,
    pub hit_rate: f64,
}

fn period_row(
    w: &Window,
    index: u32,
    start_s: f64,
    end_s: f64,
    users: usize,
    fill: (Option<f64>, Option<f64>),
    endpoint: &str,
) -> Vec<String> {
    let span = (end_s - start_s).max(1e-9);
    let q = |h: &Histogram<u64>, p: f64| {
        if h.is_empty() {
            String::new()
        } else {
            format!("{:.3}", h.value_at_quantile(p) as f64 / 1000.0)
        }
    };
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_default();
    let ok = w.requests - w.errors;
    vec![
        index.to_string(),
        format!("{start_s:.3}"),
        format!("{end_s:.3}"),
        users.to_string(),
        w.requests.to_string(),
        w.errors.to_string(),
        format!("{:.3}", w.requests as f64 / span),
        format!("{:.1}", w.prompt_tokens as f64 / span),
        format!("{:.1}", w.output_tokens as f64 / span),
        q(&w.ttft, 0.5),
        q(&w.ttft, 0.9),
        q(&w.ttft, 0.99),
        q(&w.itl, 0.5),
        q(&w.itl, 0.99),
        if w.tpot.is_empty() {
            String::new()
        } else {
            format!("{:.3}", w.tpot.mean() / 1000.0)
        },
        w.hit_rate().map(|h| format!("{h:.4}")).unwrap_or_default(),
        q(&w.schedule_delay, 0.99),
        q(&w.effective_ttft, 0.5),
        q(&w.effective_ttft, 0.99),
        format!("{:.3}", w.good as f64 / span),
        opt((ok > 0).then(|| w.good as f64 / ok as f64)),
        opt(fill.0),
        opt(fill.1),
        endpoint.to_owned(),
    ]
}

impl Collector {
    pub fn create(
        dir: &Path,
        period_s: f64,
        engine: &str,
        endpoints: &[String],
        control: ControlArgs,
        warmup_window_s: f64,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let requests = CsvLog::create(&dir.join(RequestRow::FILE), RequestRow::COLUMNS)?;
        let periods = CsvLog::create(&dir.join("periods.csv"), PERIOD_COLUMNS)?;
        let endpoints = if endpoints.len() > 1 {
            endpoints
                .iter()
                .map(|e| (e.clone(), Window::new(), Window::new()))
                .collect()
        } else {
            Vec::new()
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            requests,
            periods,
            run: Window::new(),
            period: Window::new(),
            endpoints,
            period_index: 0,
            period_start_s: 0.0,
            period_s,
            engine: engine.to_owned(),
            control,
            fresh: (0, 0, 0),
            attempts: 0,
            adaptive: None,
            open_loop: None,
            warmup_window_s,
            warmup_requests: 0,
            unsent_at_deadline: 0,
            cpu: CpuClock::start(),
        })
    }

    pub fn add(&mut self, r: &RequestRecord) -> Result<()> {
        let itl_mean =
            (!r.gaps_ms.is_empty()).then(|| r.gaps_ms.iter().sum::<f64>() / r.gaps_ms.len() as f64);
        let good = r.outcome == Outcome::Ok
            && control::meets_slo(&self.control, r.effective_ttft_ms(), r.tpot_ms());
        self.requests.append_row(&RequestRow {
            request_id: r.id,
            user: r.user,
            session: r.session.clone(),
            request_index: r.index,
            scheduled_s: r.scheduled_s,
            sent_s: r.sent_s,
            done_s: r.done_s,
            schedule_delay_ms: (r.sent_s - r.scheduled_s).max(0.0) * 1000.0,
            ttft_ms: r.ttft_ms,
            e2e_ms: r.e2e_ms,
            tpot_ms: r.tpot_ms(),
            itl_mean_ms: itl_mean,
            itl_max_ms: r.gaps_ms.iter().copied().reduce(f64::max),
            trace_input_tokens: r.trace_input_tokens,
            trace_output_tokens: r.trace_output_tokens,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            cached_tokens: r.cached_tokens,
            status: r.outcome,
            http_status: r.http_status,
            error: r.error.replace(['\n', '\r'], " "),
            endpoint: r.endpoint,
            attempts: r.attempts,
            effective_ttft_ms: r.effective_ttft_ms(),
            meets_slo: good,
            format_version: RequestRow::VERSION,
        })?;
        self.attempts += u64::from(r.attempts);
        if r.fresh && r.outcome == Outcome::Ok {
            self.fresh.0 += 1;
            self.fresh.1 += u64::from(r.prompt_tokens.unwrap_or(r.trace_input_tokens));
            self.fresh.2 += u64::from(r.cached_tokens.unwrap_or(0));
        }
        self.period.add(r, &self.control);
        let warming = r.sent_s < self.warmup_window_s;
        if warming {
            self.warmup_requests += 1;
        } else {
            self.run.add(r, &self.control);
        }
        if let Some((_, run, period)) = self.endpoints.get_mut(r.endpoint) {
            if !warming {
                run.add(r, &self.control);
            }
            period.add(r, &self.control);
        }
        Ok(())
    }

    /// Flushes buffered rows to disk.
    pub fn flush(&mut self) -> Result<()> {
        self.requests.flush()?;
        self.periods.flush()?;
        Ok(())
    }

    /// Closes the current period at `now_s` with `users` active and the token buckets at
    /// `fill`, if it is over (or `force`); returns it when closed.
    pub fn close_period(
        &mut self,
        now_s: f64,
        users: usize,
        fill: (Option<f64>, Option<f64>),
        force: bool,
    ) -> Result<Option<ClosedPeriod>> {
        if !force && now_s < self.period_start_s + self.period_s {
            return Ok(None);
        }
        let row = period_row(
            &self.period,
            self.period_index,
            self.period_start_s,
            now_s,
            users,
            fill,
            "all",
        );
        self.periods.append(&row)?;
        for (url, _, period) in &mut self.endpoints {
            let row = period_row(
                period,
                self.period_index,
                self.period_start_s,
                now_s,
                users,
                fill,
                url,
            );
            self.periods.append(&row)?;
            *period = Window::new();
        }
        self.periods.flush()?;
        let closed = std::mem::replace(&mut self.period, Window::new());
        let out = ClosedPeriod {
            index: self.period_index,
            ttft: closed.ttft,
            decode_tps_sum: closed.decode_tps_sum,
            decode_n: closed.decode_n,
        };
        self.period_index += 1;
        self.period_start_s = now_s;
        self.write_summary(now_s, false)?;
        Ok(Some(out))
    }

    /// The adaptive controller's state, for summary.json.
    pub fn set_adaptive(&mut self, v: Value) {
        self.adaptive = Some(v);
    }

    /// Requests admission still held when the deadline came, which were not sent.
    pub fn set_unsent_at_deadline(&mut self, n: u64) {
        self.unsent_at_deadline = n;
    }

    /// The open-loop arrival figures, for summary.json.
    pub fn set_open_loop(&mut self, v: Value) {
        self.open_loop = Some(v);
    }

    /// A warning when the sessions' first turns found their prompts already cached: the cache
    /// was left warm by an earlier run (or shared with other traffic).
    pub fn warm_cache_warning(&self) -> Option<String> {
        let (n, prompt, cached) = self.fresh;
        let share = cached as f64 / prompt.max(1) as f64;
        let expected = self.control.warm_prefix_pct;
        (n > 0 && share > (expected + 0.25).max(0.5)).then(|| {
            format!(
                "{:.0}% of the first turns' prompt tokens ({n} sessions) were already cached: the server's cache looks warm from an earlier run; use --reset-cache or restart it",
                share * 100.0
            )
        })
    }

    pub fn progress(&self) -> Progress {
        Progress {
            requests: self.run.requests,
            errors: self.run.errors,
            ttft_p50_ms: if self.run.ttft.is_empty() {
                0.0
            } else {
                self.run.ttft.value_at_quantile(0.5) as f64 / 1000.0
            },
            hit_rate: self.run.hit_rate().unwrap_or(0.0),
        }
    }

    /// Share of requests that failed.
    pub fn error_rate(&self) -> f64 {
        if self.run.requests == 0 {
            0.0
        } else {
            self.run.errors as f64 / self.run.requests as f64
        }
    }

    pub fn write_summary(&self, duration_s: f64, completed: bool) -> Result<()> {
        self.summary(duration_s, completed).write(&self.dir)
    }

    /// The run's figures so far, as `summary.json` holds them (`collect` also builds an AIPerf
    /// run's summary with this, so both tools' points come from one definition).
    pub fn summary(&self, duration_s: f64, completed: bool) -> Summary {
        let w = &self.run;
        let d = (duration_s - self.warmup_window_s).max(1e-9);
        let interactivity = if w.interactivity.is_empty() {
            Quantiles::default()
        } else {
            let q = |p: f64| Some(w.interactivity.value_at_quantile(p) as f64 / 1000.0);
            Quantiles {
                count: w.interactivity.len(),
                mean: Some(w.interactivity.mean() / 1000.0),
                p50: q(0.5),
                p90: q(0.9),
                p99: q(0.99),
                ..Quantiles::default()
            }
        };
        let ok = w.requests - w.errors;
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
                unsent_at_deadline: self.unsent_at_deadline,
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
            interactivity_tokens_per_s: interactivity,
            schedule_delay_ms: quantiles(&w.schedule_delay),
            cache: CacheUse {
                prompt_tokens: w.prompt_tokens,
                cached_tokens: w.cached_tokens,
                hit_rate: w.hit_rate(),
            },
            goodput: Goodput {
                slo_ttft_s: self.control.slo_ttft,
                slo_decode_tps: self.control.slo_decode_tps,
                good_requests: w.good,
                requests_per_s: w.good as f64 / d,
                output_tokens_per_s: w.good_output_tokens as f64 / d,
                fraction: (ok > 0).then(|| w.good as f64 / ok as f64),
            },
            adaptive: self.adaptive.clone(),
            open_loop: self.open_loop.clone(),
            endpoints,
            warmup_window_s: self.warmup_window_s,
            warmup_requests: self.warmup_requests,
            client_cpu: self.cpu.reading(),
            definitions: summary_definitions(),
        }
    }
}

/// How often the collector flushes `requests.csv`.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
