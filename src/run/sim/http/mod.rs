//! The simulator's OpenAI-compatible HTTP API (axum), with the fault injection tests rely on.
//!
//! This module routes, admits (readiness, model name, context and KV limits, injected faults)
//! and hands requests to the engine; `request` turns bodies into a [`request::Prepared`],
//! `vocab` picks the generated words, and `stream` writes the answer, streamed or whole.

mod request;
mod stream;
mod vocab;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use request::{Prepared, parse_json};
use stream::{Chunks, collect_response, stream_response};
pub use vocab::OutputVocab;

use super::cache::block_hashes;
use super::engine::{Command, Request};
use crate::base::rng;
use crate::base::tokenizer::Tokenizer;

/// Injected failures, each decided per request from the seed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Faults {
    pub(crate) fail_rate: f64,
    pub fail_status: StatusCode,
    pub stall: Duration,
    pub(crate) stall_rate: f64,
    pub(crate) drop_stream_rate: f64,
}

/// Everything a handler needs.
pub(crate) struct AppState {
    pub engine: mpsc::UnboundedSender<Command>,
    pub tokenizer: Tokenizer,
    pub vocab: OutputVocab,
    pub model_name: String,
    pub max_model_len: usize,
    /// Tokens the simulated GPUs' KV cache holds.
    pub kv_capacity_tokens: usize,
    pub block_size: usize,
    /// How many times faster than modelled time the engine runs; `None` with `--instant`.
    pub speed: Option<f64>,
    /// The runner whose GPUs are simulated: collect prices and powers the cell as that hardware.
    pub runner: String,
    pub seed: u64,
    pub faults: Faults,
    pub(crate) ready_at: Instant,
    pub created: u64,
    pub requests: AtomicU64,
}

pub fn router(state: Arc<AppState>, body_limit: usize) -> Router {
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/reset_prefix_cache", post(reset))
        .route("/flush_cache", post(reset))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// An OpenAI-style error: its status and message become the JSON error body.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = match self.status {
            StatusCode::NOT_FOUND => "NotFoundError",
            StatusCode::PAYLOAD_TOO_LARGE => "RequestEntityTooLargeError",
            StatusCode::UNPROCESSABLE_ENTITY => "UnprocessableEntityError",
            StatusCode::TOO_MANY_REQUESTS => "RateLimitError",
            StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailableError",
            s if s.is_server_error() => "InternalServerError",
            _ => "BadRequestError",
        };
        let body = json!({"error": {"message": self.message, "type": kind, "param": null, "code": self.status.as_u16()}});
        let mut resp = (self.status, axum::Json(body)).into_response();
        if matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

fn api_error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
    }
}

/// An OpenAI-style error response.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    api_error(status, message).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn health(State(s): State<Arc<AppState>>) -> Response {
    if Instant::now() < s.ready_at {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the simulated server is starting",
        );
    }
    StatusCode::OK.into_response()
}

async fn models(State(s): State<Arc<AppState>>) -> Response {
    axum::Json(json!({
        "object": "list",
        "data": [{
            "id": s.model_name,
            "object": "model",
            "created": s.created,
            "owned_by": "kvsweep-sim",
            "max_model_len": s.max_model_len,
            // A replay stores this answer in metadata.json: the report reads the speed there.
            "sim_speed": s.speed,
            // ... and the hardware it modelled, whose price and power the cell's cost uses.
            "sim_runner": s.runner,
        }],
    }))
    .into_response()
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    let (tx, rx) = oneshot::channel();
    if s.engine.send(Command::Metrics(tx)).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the engine stopped");
    }
    match rx.await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the engine stopped"),
    }
}

async fn reset(State(s): State<Arc<AppState>>) -> Response {
    let (tx, rx) = oneshot::channel();
    if s.engine.send(Command::Reset(tx)).is_err() || rx.await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the engine stopped");
    }
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn completions(
    State(s): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match parse_json(body).and_then(|req| Prepared::completion(req, &s.tokenizer)) {
        Ok(p) => serve(s, p).await,
        Err(e) => e.into_response(),
    }
}

async fn chat_completions(
    State(s): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match parse_json(body).and_then(|req| Prepared::chat(req, &s.tokenizer)) {
        Ok(p) => serve(s, p).await,
        Err(e) => e.into_response(),
    }
}

/// How many tokens to generate and whether that is a natural stop: the request's limits checked
/// against each other and the context, then a seeded natural length within them.
fn output_length(
    max_model_len: usize,
    seed: u64,
    p: &Prepared,
    key: u64,
) -> Result<(u32, bool), ApiError> {
    let room = max_model_len.saturating_sub(p.prompt.len());
    let max_tokens = match p.max_tokens {
        Some(m) if m < 1 => {
            return Err(api_error(
                StatusCode::BAD_REQUEST,
                format!("max_tokens must be at least 1, got {m}"),
            ));
        }
        Some(m) => Some(u32::try_from(m).unwrap_or(u32::MAX)),
        None => None,
    };
    let min_tokens = match p.min_tokens {
        Some(m) if m < 0 => {
            return Err(api_error(
                StatusCode::BAD_REQUEST,
                format!("min_tokens must not be negative, got {m}"),
            ));
        }
        Some(m) => u32::try_from(m).unwrap_or(u32::MAX),
        None => 0,
    };
    if let Some(max) = max_tokens
        && min_tokens > max
    {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            format!("min_tokens ({min_tokens}) must not exceed max_tokens ({max})"),
        ));
    }
    let wanted = max_tokens.map_or(1, |m| m as usize);
    if p.prompt.len() + wanted > max_model_len {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            format!(
                "This model's maximum context length is {} tokens. However, you requested {} tokens ({} in the prompt, {} in the completion).",
                max_model_len,
                p.prompt.len() + wanted,
                p.prompt.len(),
                wanted
            ),
        ));
    }
    // Where the simulated model would stop on its own: 16–512 tokens, fixed by seed and prompt.
    let natural = natural_len(seed, key);
    let cap = max_tokens.unwrap_or(u32::try_from(room).unwrap_or(u32::MAX));
    Ok(if p.ignore_eos {
        (cap, false)
    } else {
        let len = natural.max(min_tokens).min(cap);
        (len, len == natural)
    })
}

async fn serve(s: Arc<AppState>, p: Prepared) -> Response {
    if Instant::now() < s.ready_at {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the simulated server is starting",
        );
    }
    if let Some(m) = &p.model
        && m != &s.model_name
    {
        return error(
            StatusCode::NOT_FOUND,
            format!("The model `{m}` does not exist."),
        );
    }
    if p.prompt.is_empty() {
        return error(StatusCode::BAD_REQUEST, "the prompt is empty");
    }
    let index = s.requests.fetch_add(1, Ordering::Relaxed);
    let f = s.faults;
    if f.fail_rate > 0.0 && rng::unit(s.seed ^ 0xFA11, index) < f.fail_rate {
        return error(
            f.fail_status,
            format!("injected failure (--fail-rate {})", f.fail_rate),
        );
    }
    let key = prompt_key(&p.prompt);
    let (output_len, natural_stop) = match output_length(s.max_model_len, s.seed, &p, key) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    if p.prompt.len() + output_len as usize > s.kv_capacity_tokens {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "the request needs {} tokens of KV cache; the simulated GPUs hold {}",
                p.prompt.len() + output_len as usize,
                s.kv_capacity_tokens
            ),
        );
    }
    let stall = (f.stall > Duration::ZERO && rng::unit(s.seed ^ 0x57A1, index) < f.stall_rate)
        .then_some(f.stall);
    let drop_after = (p.stream
        && f.drop_stream_rate > 0.0
        && rng::unit(s.seed ^ 0xD809, index) < f.drop_stream_rate)
        .then_some(output_len / 2);

    let (tx, rx) = mpsc::unbounded_channel();
    let request = Request {
        prompt_len: p.prompt.len(),
        hashes: block_hashes(&p.prompt, s.block_size),
        output_len,
        natural_stop,
        arrived: Instant::now(),
        events: tx,
    };
    if s.engine.send(Command::Submit(request)).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the engine stopped");
    }
    let chunks = Chunks::new(p.api, &s.model_name, s.created, p.include_usage, index, key);
    if p.stream {
        stream_response(s, rx, chunks, stall, drop_after)
    } else {
        collect_response(s, rx, chunks, stall).await
    }
}

/// Where the simulated model stops on its own for a prompt of `key`: 16–512 tokens.
pub(super) fn natural_len(seed: u64, key: u64) -> u32 {
    16 + (rng::mix(seed ^ key) % 497) as u32
}

/// A key for a prompt's content, which fixes the simulated output for it.
pub(super) fn prompt_key(ids: &[u32]) -> u64 {
    let bytes: Vec<u8> = ids.iter().flat_map(|t| t.to_le_bytes()).collect();
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

#[cfg(test)]
mod tests {
    use super::request::Api;
    use super::*;

    fn prepared(
        prompt_len: usize,
        max: Option<i64>,
        min: Option<i64>,
        ignore_eos: bool,
    ) -> Prepared {
        Prepared {
            api: Api::Completions,
            model: None,
            prompt: vec![1000; prompt_len],
            max_tokens: max,
            min_tokens: min,
            ignore_eos,
            stream: false,
            include_usage: false,
        }
    }

    fn message(e: ApiError) -> String {
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        e.message
    }

    #[test]
    fn bad_limits_are_refused_with_the_reason() {
        let too_small = output_length(100, 1, &prepared(10, Some(0), None, false), 1);
        assert!(message(too_small.expect_err("max 0")).contains("at least 1"));
        let negative = output_length(100, 1, &prepared(10, None, Some(-1), false), 1);
        assert!(message(negative.expect_err("min -1")).contains("negative"));
        let crossed = output_length(100, 1, &prepared(10, Some(5), Some(6), false), 1);
        assert!(message(crossed.expect_err("min > max")).contains("must not exceed"));
        let long = output_length(100, 1, &prepared(90, Some(11), None, false), 1);
        assert!(message(long.expect_err("too long")).contains("maximum context length is 100"));
    }

    #[test]
    fn ignore_eos_generates_exactly_the_cap() {
        assert_eq!(
            output_length(1000, 1, &prepared(10, Some(300), None, true), 5).expect("fits"),
            (300, false)
        );
        let room = output_length(1000, 1, &prepared(10, None, None, true), 5).expect("fits");
        assert_eq!(
            room,
            (990, false),
            "without max_tokens: the rest of the context"
        );
    }

    #[test]
    fn the_natural_length_is_seeded_and_kept_within_the_limits() {
        for key in 0..200 {
            let (len, natural) =
                output_length(100_000, 3, &prepared(10, None, None, false), key).expect("fits");
            assert!((16..=512).contains(&len) && natural, "{len}");
            assert_eq!(
                output_length(100_000, 3, &prepared(10, None, None, false), key).expect("fits"),
                (len, natural)
            );
            let (capped, natural) =
                output_length(100_000, 3, &prepared(10, Some(8), None, false), key).expect("fits");
            assert_eq!(
                (capped, natural),
                (8, false),
                "max_tokens below every natural stop"
            );
            let (floored, _) =
                output_length(100_000, 3, &prepared(10, None, Some(600), false), key)
                    .expect("fits");
            assert_eq!(floored, 600, "min_tokens past every natural stop");
        }
    }

    #[test]
    fn errors_name_their_openai_type_and_busy_ones_say_when_to_retry() {
        let busy = api_error(StatusCode::TOO_MANY_REQUESTS, "slow down").into_response();
        assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
        let bad = api_error(StatusCode::BAD_REQUEST, "no").into_response();
        assert!(bad.headers().get(header::RETRY_AFTER).is_none());
        let starting = error(StatusCode::SERVICE_UNAVAILABLE, "starting");
        assert_eq!(starting.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn the_prompt_key_follows_content() {
        assert_eq!(prompt_key(&[1, 2, 3]), prompt_key(&[1, 2, 3]));
        assert_ne!(prompt_key(&[1, 2, 3]), prompt_key(&[1, 2, 4]));
        assert_ne!(prompt_key(&[1, 2]), prompt_key(&[1, 2, 0]));
    }
}
