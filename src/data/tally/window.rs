//! Sums and histograms over a span of a run: what the tally adds each request into.

use hdrhistogram::Histogram;

use super::{RequestRecord, Slo};
use crate::data::artifact::schema::{Outcome, PeriodRow, Quantiles};

/// Microsecond histograms up to an hour, three significant digits.
pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

fn record_ms(h: &mut Histogram<u64>, ms: f64) {
    let _ = h.record(((ms * 1000.0).round() as u64).clamp(1, 3_600_000_000));
}

/// Count, mean and percentiles (ms) of a microsecond histogram.
pub(super) fn quantiles(h: &Histogram<u64>) -> Quantiles {
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

/// A percentile (ms) of a microsecond histogram; `None` when it is empty.
pub(super) fn quantile_ms(h: &Histogram<u64>, p: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(p) as f64 / 1000.0)
}

/// Sums and histograms over a span of the run.
pub(super) struct Window {
    pub requests: u64,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub output_tokens: u64,
    pub ttft: Histogram<u64>,
    pub(crate) itl: Histogram<u64>,
    pub tpot: Histogram<u64>,
    pub e2e: Histogram<u64>,
    /// Tokens per second one user sees, ×1000 (the histogram records integers).
    pub interactivity: Histogram<u64>,
    pub(crate) schedule_delay: Histogram<u64>,
    pub(crate) effective_ttft: Histogram<u64>,
    pub good: u64,
    pub(crate) good_output_tokens: u64,
    pub(crate) decode_tps_sum: f64,
    pub(crate) decode_n: u64,
}

impl Window {
    pub fn new() -> Self {
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

    pub fn add(&mut self, r: &RequestRecord, slo: &Slo) {
        self.requests += 1;
        record_ms(&mut self.schedule_delay, r.schedule_delay_ms());
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
        if slo.met_by(r) {
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
            let _ = self
                .interactivity
                .record(((1000.0 / tpot) * 1000.0).round().max(1.0) as u64);
        }
        record_ms(&mut self.e2e, r.e2e_ms);
    }

    pub fn ok(&self) -> u64 {
        self.requests - self.errors
    }

    pub fn hit_rate(&self) -> Option<f64> {
        (self.prompt_tokens > 0).then(|| self.cached_tokens as f64 / self.prompt_tokens as f64)
    }

    /// Tokens per second one user sees: quantiles of 1000 / TPOT.
    pub fn interactivity(&self) -> Quantiles {
        let h = &self.interactivity;
        if h.is_empty() {
            return Quantiles::default();
        }
        let q = |p: f64| Some(h.value_at_quantile(p) as f64 / 1000.0);
        Quantiles {
            count: h.len(),
            mean: Some(h.mean() / 1000.0),
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            ..Quantiles::default()
        }
    }

    /// This window as a `periods.csv` row from `start_s` to `end_s`.
    pub(crate) fn period_row(&self, period: u32, span: (f64, f64), users: usize) -> PeriodRow {
        let (start_s, end_s) = span;
        let seconds = (end_s - start_s).max(1e-9);
        let ok = self.ok();
        PeriodRow {
            period,
            start_s,
            end_s,
            users,
            requests: self.requests,
            errors: self.errors,
            requests_per_s: self.requests as f64 / seconds,
            input_tokens_per_s: self.prompt_tokens as f64 / seconds,
            output_tokens_per_s: self.output_tokens as f64 / seconds,
            ttft_p50_ms: quantile_ms(&self.ttft, 0.5),
            ttft_p90_ms: quantile_ms(&self.ttft, 0.9),
            ttft_p99_ms: quantile_ms(&self.ttft, 0.99),
            itl_p50_ms: quantile_ms(&self.itl, 0.5),
            itl_p99_ms: quantile_ms(&self.itl, 0.99),
            tpot_mean_ms: (!self.tpot.is_empty()).then(|| self.tpot.mean() / 1000.0),
            cache_hit_rate: self.hit_rate(),
            schedule_delay_p99_ms: quantile_ms(&self.schedule_delay, 0.99),
            effective_ttft_p50_ms: quantile_ms(&self.effective_ttft, 0.5),
            effective_ttft_p99_ms: quantile_ms(&self.effective_ttft, 0.99),
            goodput_requests_per_s: self.good as f64 / seconds,
            goodput_fraction: (ok > 0).then(|| self.good as f64 / ok as f64),
            itpm_fill: None,
            otpm_fill: None,
            endpoint: String::new(),
            format_version: PeriodRow::VERSION,
        }
    }
}
