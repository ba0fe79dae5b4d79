//! Sending synthetic prompts: a working set of shared prefixes with request-unique tails, sent
//! once each or by a fixed number of closed-loop workers, every answer measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use crate::base::rng::mix;
use crate::base::workload::tester::Common;
use crate::data::trace::prompt::{PromptBuilder, PromptState};
use crate::run::openai::client::{self, Outcome, PromptBody};
use crate::run::openai::preflight::{self, Target};

/// What one request is: which prefix, how much of it is shared, how long the prompt is.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    /// Names the prefix: equal ids give byte-identical leading chunks.
    pub prefix: u64,
    /// Tokens of the prefix the prompt starts with (whole chunks).
    pub(crate) shared_tokens: u32,
    pub context_tokens: u32,
    /// Makes the rest of the prompt unique; equal keys repeat it exactly.
    pub unique: u64,
}

/// One measured request.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub sent_s: f64,
    pub ok: bool,
    pub ttft_ms: Option<f64>,
    pub e2e_ms: f64,
    pub itl_ms: Option<f64>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub cached_tokens: u32,
    pub error: String,
}

/// Columns of [`Sample::cells`], for the testers' per-request CSVs.
pub const SAMPLE_COLUMNS: &[&str] = &[
    "ok",
    "ttft_ms",
    "e2e_ms",
    "itl_ms",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
];

impl Sample {
    /// The measured fields as CSV cells, in [`SAMPLE_COLUMNS`] order.
    pub fn cells(&self) -> Vec<String> {
        let opt = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_default();
        vec![
            self.ok.to_string(),
            opt(self.ttft_ms),
            format!("{:.3}", self.e2e_ms),
            opt(self.itl_ms),
            self.prompt_tokens.to_string(),
            self.completion_tokens.to_string(),
            self.cached_tokens.to_string(),
        ]
    }
}

/// A connected server and how prompts are made for it.
pub struct Load {
    pub target: Target,
    builder: PromptBuilder,
    chunk: u32,
    output_tokens: u32,
    timeout: Duration,
    started: Instant,
    next_unique: AtomicU64,
}

impl Load {
    pub async fn connect(common: &Common, connections: usize) -> Result<Self> {
        let target = preflight::connect(
            &common.url,
            common.model.as_deref(),
            common.api,
            common.tokenizer.as_deref(),
            connections,
        )
        .await?;
        let range = target.range;
        Ok(Self {
            target,
            builder: PromptBuilder {
                seed: common.seed,
                range,
            },
            chunk: common.chunk_size.max(1),
            output_tokens: common.output_tokens,
            timeout: Duration::from_secs_f64(common.request_timeout.max(1.0)),
            started: Instant::now(),
            next_unique: AtomicU64::new(1),
        })
    }

    /// A key no other request of this run has.
    pub fn fresh(&self) -> u64 {
        mix(self.next_unique.fetch_add(1, Ordering::Relaxed) ^ 0x7E57)
    }

    /// `tokens` rounded down to whole chunks.
    pub(crate) fn aligned(&self, tokens: u32) -> u32 {
        tokens / self.chunk * self.chunk
    }

    fn prompt(&self, ask: Ask) -> Arc<Vec<u32>> {
        let chunks = ask.shared_tokens / self.chunk;
        let ids: Vec<u64> = (0..u64::from(chunks))
            .map(|k| mix(ask.prefix.wrapping_mul(0x1_0000_0001) ^ k))
            .collect();
        let mut state = PromptState::default();
        self.builder.build(
            &mut state,
            0x7E57_E125,
            self.chunk,
            &ids,
            ask.context_tokens,
            self.target.template_tokens,
            ask.unique,
        );
        Arc::new(state.tokens().to_vec())
    }

    pub async fn send(&self, ask: Ask) -> Sample {
        let body = PromptBody::new(
            &self.target.model,
            self.prompt(ask),
            self.target.encoding.clone(),
            self.output_tokens,
            true,
        );
        let mut sent_s;
        let mut attempts = 0;
        let m = loop {
            attempts += 1;
            sent_s = self.started.elapsed().as_secs_f64();
            let m = client::send(
                &self.target.client,
                &self.target.url,
                "kvsweep-test",
                body.clone(),
                self.timeout,
                || {},
            )
            .await;
            // A pooled connection the server closed while idle (llama-server does) fails before
            // any answer: the request never reached the server, so it is sent again, once.
            if m.http_status == 0 && !m.timed_out && attempts < 2 {
                continue;
            }
            break m;
        };
        let usage = m.usage.unwrap_or_default();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        Sample {
            sent_s,
            ok: m.outcome() == Outcome::Ok,
            ttft_ms: m.ttft.map(ms),
            e2e_ms: ms(m.e2e),
            itl_ms: (!m.gaps.is_empty())
                .then(|| m.gaps.iter().map(|g| ms(*g)).sum::<f64>() / m.gaps.len() as f64),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            cached_tokens: usage.cached_tokens,
            error: m.error.unwrap_or_default(),
        }
    }

    /// Sends every ask once, `concurrency` at a time; samples in ask order.
    pub async fn each(&self, asks: &[Ask], concurrency: usize) -> Vec<Sample> {
        use futures_util::StreamExt;
        futures_util::stream::iter(asks.iter().map(|a| self.send(*a)))
            .buffered(concurrency.max(1))
            .collect()
            .await
    }

    /// `concurrency` closed-loop workers send `next(i)` (i counts requests) for `duration`.
    pub(crate) async fn for_duration(
        &self,
        concurrency: usize,
        duration: Duration,
        next: &(dyn Fn(u64) -> Ask + Sync),
    ) -> Vec<Sample> {
        let deadline = Instant::now() + duration;
        let count = AtomicU64::new(0);
        let worker = || async {
            let mut mine = Vec::new();
            while Instant::now() < deadline {
                let i = count.fetch_add(1, Ordering::Relaxed);
                mine.push(self.send(next(i)).await);
            }
            mine
        };
        let all = futures_util::future::join_all((0..concurrency.max(1)).map(|_| worker())).await;
        let mut samples: Vec<Sample> = all.into_iter().flatten().collect();
        samples.sort_by(|a, b| a.sent_s.total_cmp(&b.sent_s));
        samples
    }

    /// The server's `/metrics` counter `name`, if it exposes one.
    pub async fn counter(&self, name: &str) -> Option<f64> {
        let text = self
            .target
            .client
            .get(format!("{}/metrics", self.target.base))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        crate::run::metrics::parse::parse(&text).sum(name)
    }
}

/// Figures of a group of samples.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub requests: usize,
    pub failed: usize,
    pub seconds: f64,
    pub(crate) input_tps: f64,
    pub(crate) output_tps: f64,
    pub(crate) ttft_avg_ms: f64,
    pub ttft_p50_ms: f64,
    pub(crate) ttft_p95_ms: f64,
    pub(crate) ttft_max_ms: f64,
    pub(crate) itl_avg_ms: f64,
    pub e2e_p50_ms: f64,
    /// Cached prompt tokens over prompt tokens, as the server reported them.
    pub hit_rate: f64,
}

impl Stats {
    pub fn of(samples: &[Sample]) -> Self {
        let ok: Vec<&Sample> = samples.iter().filter(|s| s.ok).collect();
        let mut ttft: Vec<f64> = ok.iter().filter_map(|s| s.ttft_ms).collect();
        ttft.sort_by(f64::total_cmp);
        let mut e2e: Vec<f64> = ok.iter().map(|s| s.e2e_ms).collect();
        e2e.sort_by(f64::total_cmp);
        let itl: Vec<f64> = ok.iter().filter_map(|s| s.itl_ms).collect();
        let start = samples
            .iter()
            .map(|s| s.sent_s)
            .fold(f64::INFINITY, f64::min);
        let end = samples
            .iter()
            .map(|s| s.sent_s + s.e2e_ms / 1000.0)
            .fold(f64::NEG_INFINITY, f64::max);
        let seconds = if end > start { end - start } else { 0.0 };
        let sum = |f: fn(&Sample) -> u32| ok.iter().map(|s| f64::from(f(s))).sum::<f64>();
        let (prompt, cached) = (sum(|s| s.prompt_tokens), sum(|s| s.cached_tokens));
        let per_s = |x: f64| if seconds > 0.0 { x / seconds } else { 0.0 };
        let mean = |v: &[f64]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let pct = |p| crate::base::stats::percentile(&ttft, p);
        Self {
            requests: samples.len(),
            failed: samples.len() - ok.len(),
            seconds,
            input_tps: per_s(prompt),
            output_tps: per_s(sum(|s| s.completion_tokens)),
            ttft_avg_ms: mean(&ttft),
            ttft_p50_ms: pct(50.0),
            ttft_p95_ms: pct(95.0),
            ttft_max_ms: ttft.last().copied().unwrap_or(0.0),
            itl_avg_ms: mean(&itl),
            e2e_p50_ms: crate::base::stats::percentile(&e2e, 50.0),
            hit_rate: if prompt > 0.0 { cached / prompt } else { 0.0 },
        }
    }
}
