//! The simulator's OpenAI-compatible HTTP API (axum), with the fault injection tests rely on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::BytesMut;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::cache::block_hashes;
use super::engine::{Command, Event, FinishReason, Request};
use super::rng;
use crate::tokenizer::{ChatMessage, Tokenizer, render_chat};

/// Injected failures, each decided per request from the seed.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub fail_rate: f64,
    pub fail_status: StatusCode,
    pub stall: Duration,
    pub stall_rate: f64,
    pub drop_stream_rate: f64,
}

/// Everything a handler needs.
pub struct AppState {
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
    pub seed: u64,
    pub faults: Faults,
    pub ready_at: Instant,
    pub created: u64,
    pub requests: AtomicU64,
}

/// The text of generated tokens: single-token words, picked per position from the seed.
pub struct OutputVocab {
    /// JSON-escaped text of each piece, ready to splice into a chunk.
    escaped: Vec<String>,
    raw: Vec<String>,
}

const WORDS: &[&str] = &[
    " the",
    " of",
    " and",
    " to",
    " in",
    " is",
    " that",
    " for",
    " it",
    " as",
    " with",
    " on",
    " this",
    " by",
    " be",
    " are",
    " from",
    " at",
    " or",
    " an",
    " we",
    " can",
    " not",
    " all",
    " cache",
    " data",
    " model",
    " file",
    " code",
    " test",
    " value",
    " time",
    " first",
    " new",
    " use",
    " one",
    " which",
    " when",
    " will",
    " more",
    " function",
    " return",
    " result",
    " server",
    " request",
    " token",
    " block",
    " memory",
];

impl OutputVocab {
    pub fn new(tokenizer: &Tokenizer) -> Self {
        let mut raw: Vec<String> = WORDS
            .iter()
            .filter(|w| tokenizer.encode(w).is_ok_and(|ids| ids.len() == 1))
            .map(|w| (*w).to_owned())
            .collect();
        if raw.len() < 8 {
            raw = (100..356u32)
                .filter_map(|id| tokenizer.decode(&[id]).ok())
                .filter(|s| !s.is_empty())
                .collect();
        }
        let escaped = raw
            .iter()
            .map(|s| serde_json::to_string(s).expect("string"))
            .collect();
        Self { escaped, raw }
    }

    fn index(&self, seed: u64, key: u64, position: u32) -> usize {
        (rng::mix(seed ^ key.rotate_left(17) ^ u64::from(position)) % self.raw.len() as u64)
            as usize
    }
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

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// A completion prompt: text, token ids, or a batch (which is refused).
#[derive(Debug)]
enum PromptInput {
    Text(String),
    Ids(Vec<u32>),
    /// A list of prompts, with its length.
    Batch(usize),
}

/// Hand-written because serde's untagged enums buffer the whole value first: a 32k-token prompt
/// then costs several times its parse. This reads the ids straight into their vector.
impl<'de> Deserialize<'de> for PromptInput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PromptVisitor;

        /// The first element of a list decides its kind.
        enum First {
            Id(u32),
            Other,
        }

        impl<'de> Deserialize<'de> for First {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct FirstVisitor;
                impl<'de> serde::de::Visitor<'de> for FirstVisitor {
                    type Value = First;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("a token id or a prompt")
                    }
                    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<First, E> {
                        u32::try_from(v)
                            .map(First::Id)
                            .map_err(|_| E::custom(format!("token id {v} is out of range")))
                    }
                    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<First, E> {
                        Ok(First::Other)
                    }
                    fn visit_seq<A: serde::de::SeqAccess<'de>>(
                        self,
                        mut seq: A,
                    ) -> Result<First, A::Error> {
                        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                        Ok(First::Other)
                    }
                }
                d.deserialize_any(FirstVisitor)
            }
        }

        impl<'de> serde::de::Visitor<'de> for PromptVisitor {
            type Value = PromptInput;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a list of token ids")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PromptInput, E> {
                Ok(PromptInput::Text(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<PromptInput, E> {
                Ok(PromptInput::Text(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<PromptInput, A::Error> {
                match seq.next_element::<First>()? {
                    None => Ok(PromptInput::Ids(Vec::new())),
                    Some(First::Id(first)) => {
                        let mut ids = Vec::with_capacity(seq.size_hint().unwrap_or(1024) + 1);
                        ids.push(first);
                        while let Some(id) = seq.next_element::<u32>()? {
                            ids.push(id);
                        }
                        Ok(PromptInput::Ids(ids))
                    }
                    Some(First::Other) => {
                        let mut n = 1;
                        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                            n += 1;
                        }
                        Ok(PromptInput::Batch(n))
                    }
                }
            }
        }
        d.deserialize_any(PromptVisitor)
    }
}

#[derive(Debug, Deserialize)]
struct CompletionBody {
    model: Option<String>,
    prompt: PromptInput,
    max_tokens: Option<i64>,
    min_tokens: Option<i64>,
    ignore_eos: Option<bool>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    content: Option<MessageContent>,
}

#[derive(Debug, Deserialize)]
struct ChatBody {
    model: Option<String>,
    messages: Vec<Message>,
    max_tokens: Option<i64>,
    max_completion_tokens: Option<i64>,
    min_tokens: Option<i64>,
    ignore_eos: Option<bool>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Completions,
    Chat,
}

/// A validated request, before the engine sees it.
struct Prepared {
    api: Api,
    model: Option<String>,
    prompt: Vec<u32>,
    max_tokens: Option<i64>,
    min_tokens: Option<i64>,
    ignore_eos: bool,
    stream: bool,
    include_usage: bool,
}

/// Parses a JSON body: bad syntax is 400, a body of the wrong shape 422 (as FastAPI answers).
fn parse_json<T: for<'de> Deserialize<'de>>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        let status = if status == StatusCode::PAYLOAD_TOO_LARGE {
            status
        } else {
            StatusCode::BAD_REQUEST
        };
        api_error(status, rejection.body_text())
    })?;
    serde_json::from_slice(&body).map_err(|e| {
        let status = if e.is_data() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        api_error(status, format!("invalid request body: {e}"))
    })
}

async fn completions(
    State(s): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: CompletionBody = match parse_json(body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let prompt = match req.prompt {
        PromptInput::Text(text) => match s.tokenizer.encode(&text) {
            Ok(ids) => ids,
            Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        },
        PromptInput::Ids(ids) => {
            if let Some(bad) = ids.iter().find(|&&id| id >= s.tokenizer.vocab_size()) {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "token id {bad} is out of vocabulary (size {})",
                        s.tokenizer.vocab_size()
                    ),
                );
            }
            ids
        }
        PromptInput::Batch(n) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("a batch of {n} prompts is not supported: send one prompt per request"),
            );
        }
    };
    let include_usage = req
        .stream_options
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    serve(
        s,
        Prepared {
            api: Api::Completions,
            model: req.model,
            prompt,
            max_tokens: req.max_tokens,
            min_tokens: req.min_tokens,
            ignore_eos: req.ignore_eos.unwrap_or(false),
            stream: req.stream.unwrap_or(false),
            include_usage,
        },
    )
    .await
}

async fn chat_completions(
    State(s): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let req: ChatBody = match parse_json(body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if req.messages.is_empty() {
        return error(StatusCode::BAD_REQUEST, "messages must not be empty");
    }
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.into_iter().enumerate() {
        let content = match m.content {
            None => String::new(),
            Some(MessageContent::Text(t)) => t,
            Some(MessageContent::Parts(parts)) => {
                let mut text = String::new();
                for p in parts {
                    match (p.kind.as_str(), p.text) {
                        ("text", Some(t)) => text.push_str(&t),
                        (kind, _) => {
                            return error(
                                StatusCode::BAD_REQUEST,
                                format!(
                                    "messages[{i}]: content part of type `{kind}` is not supported"
                                ),
                            );
                        }
                    }
                }
                text
            }
        };
        messages.push(ChatMessage {
            role: m.role,
            content,
        });
    }
    let prompt = match s.tokenizer.encode(&render_chat(&messages)) {
        Ok(ids) => ids,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let include_usage = req
        .stream_options
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    serve(
        s,
        Prepared {
            api: Api::Chat,
            model: req.model,
            prompt,
            max_tokens: req.max_completion_tokens.or(req.max_tokens),
            min_tokens: req.min_tokens,
            ignore_eos: req.ignore_eos.unwrap_or(false),
            stream: req.stream.unwrap_or(false),
            include_usage,
        },
    )
    .await
}

/// How many tokens to generate and whether that is a natural stop.
fn output_length(s: &AppState, p: &Prepared, key: u64) -> Result<(u32, bool), ApiError> {
    let room = s.max_model_len.saturating_sub(p.prompt.len());
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
    if p.prompt.len() + wanted > s.max_model_len {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            format!(
                "This model's maximum context length is {} tokens. However, you requested {} tokens ({} in the prompt, {} in the completion).",
                s.max_model_len,
                p.prompt.len() + wanted,
                p.prompt.len(),
                wanted
            ),
        ));
    }
    // Where the simulated model would stop on its own: 16–512 tokens, fixed by seed and prompt.
    let natural = 16 + (rng::mix(s.seed ^ key) % 497) as u32;
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
    let (output_len, natural_stop) = match output_length(&s, &p, key) {
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
    let chunks = Chunks::new(&s, &p, index, key);
    if p.stream {
        stream_response(s, rx, chunks, stall, drop_after)
    } else {
        collect_response(s, rx, chunks, stall).await
    }
}

/// A key for a prompt's content, which fixes the simulated output for it.
fn prompt_key(ids: &[u32]) -> u64 {
    let bytes: Vec<u8> = ids.iter().flat_map(|t| t.to_le_bytes()).collect();
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// Pre-formatted pieces of a response's JSON, so each streamed token costs a few copies.
struct Chunks {
    api: Api,
    head: String,
    token_prefix: String,
    token_suffix: &'static str,
    key: u64,
    include_usage: bool,
}

impl Chunks {
    fn new(s: &AppState, p: &Prepared, index: u64, key: u64) -> Self {
        let model = serde_json::to_string(&s.model_name).expect("string");
        let (id, object) = match p.api {
            Api::Completions => (format!("cmpl-{index}"), "text_completion"),
            Api::Chat => (format!("chatcmpl-{index}"), "chat.completion.chunk"),
        };
        let head = format!(
            r#"{{"id":"{id}","object":"{object}","created":{},"model":{model},"#,
            s.created
        );
        let (token_prefix, token_suffix) = match p.api {
            Api::Completions => (
                format!(r#"data: {head}"choices":[{{"index":0,"text":"#),
                r#","logprobs":null,"finish_reason":null}]}"#,
            ),
            Api::Chat => (
                format!(r#"data: {head}"choices":[{{"index":0,"delta":{{"content":"#),
                r#"},"logprobs":null,"finish_reason":null}]}"#,
            ),
        };
        Self {
            api: p.api,
            head,
            token_prefix,
            token_suffix,
            key,
            include_usage: p.include_usage,
        }
    }

    fn token(&self, buf: &mut BytesMut, vocab: &OutputVocab, seed: u64, position: u32) {
        buf.extend_from_slice(self.token_prefix.as_bytes());
        buf.extend_from_slice(vocab.escaped[vocab.index(seed, self.key, position)].as_bytes());
        buf.extend_from_slice(self.token_suffix.as_bytes());
        buf.extend_from_slice(b"\n\n");
    }

    fn opening(&self, buf: &mut BytesMut) {
        if self.api == Api::Chat {
            buf.extend_from_slice(format!(r#"data: {}"choices":[{{"index":0,"delta":{{"role":"assistant","content":""}},"logprobs":null,"finish_reason":null}}]}}"#, self.head).as_bytes());
            buf.extend_from_slice(b"\n\n");
        }
    }

    fn closing(&self, buf: &mut BytesMut, reason: FinishReason, usage: &serde_json::Value) {
        let choice = match self.api {
            Api::Completions => format!(
                r#"{{"index":0,"text":"","logprobs":null,"finish_reason":"{}"}}"#,
                reason.as_str()
            ),
            Api::Chat => format!(
                r#"{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"{}"}}"#,
                reason.as_str()
            ),
        };
        buf.extend_from_slice(
            format!("data: {}\"choices\":[{choice}]}}\n\n", self.head).as_bytes(),
        );
        if self.include_usage {
            buf.extend_from_slice(
                format!("data: {}\"choices\":[],\"usage\":{usage}}}\n\n", self.head).as_bytes(),
            );
        }
        buf.extend_from_slice(b"data: [DONE]\n\n");
    }
}

fn usage_json(
    prompt_tokens: usize,
    completion_tokens: u32,
    cached_tokens: usize,
) -> serde_json::Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens as usize,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    })
}

async fn collect_response(
    s: Arc<AppState>,
    mut rx: mpsc::UnboundedReceiver<Event>,
    chunks: Chunks,
    stall: Option<Duration>,
) -> Response {
    let mut text = String::new();
    loop {
        match rx.recv().await {
            Some(Event::Token(position)) => {
                text.push_str(&s.vocab.raw[s.vocab.index(s.seed, chunks.key, position)])
            }
            Some(Event::Done {
                reason,
                prompt_tokens,
                completion_tokens,
                cached_tokens,
            }) => {
                if let Some(stall) = stall {
                    tokio::time::sleep(stall).await;
                }
                let usage = usage_json(prompt_tokens, completion_tokens, cached_tokens);
                let id_object = match chunks.api {
                    Api::Completions => {
                        json!({"text": text, "index": 0, "logprobs": null, "finish_reason": reason.as_str()})
                    }
                    Api::Chat => {
                        json!({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": reason.as_str()})
                    }
                };
                let head: serde_json::Value =
                    serde_json::from_str(&format!("{}\"choices\":[]}}", chunks.head))
                        .expect("valid head");
                let mut body = head;
                if chunks.api == Api::Chat {
                    body["object"] = json!("chat.completion");
                }
                body["choices"] = json!([id_object]);
                body["usage"] = usage;
                return axum::Json(body).into_response();
            }
            Some(Event::Rejected(message)) => return error(StatusCode::BAD_REQUEST, message),
            None => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the engine dropped the request",
                );
            }
        }
    }
}

struct StreamState {
    s: Arc<AppState>,
    rx: mpsc::UnboundedReceiver<Event>,
    chunks: Chunks,
    stall: Option<Duration>,
    drop_after: Option<u32>,
    /// A stall to serve before the next write.
    stall_next: Option<Duration>,
    opened: bool,
    done: bool,
}

fn stream_response(
    s: Arc<AppState>,
    rx: mpsc::UnboundedReceiver<Event>,
    chunks: Chunks,
    stall: Option<Duration>,
    drop_after: Option<u32>,
) -> Response {
    let state = StreamState {
        s,
        rx,
        chunks,
        stall,
        drop_after,
        stall_next: None,
        opened: false,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if let Some(stall) = st.stall_next.take() {
            tokio::time::sleep(stall).await;
        }
        let mut buf = BytesMut::with_capacity(512);
        if !st.opened {
            st.chunks.opening(&mut buf);
            st.opened = true;
        }
        let mut next = st.rx.recv().await;
        loop {
            match next {
                Some(Event::Token(position)) => {
                    if st.drop_after.is_some_and(|n| position >= n) {
                        st.done = true;
                        return Some((Err(std::io::Error::other("injected stream drop")), st));
                    }
                    st.chunks.token(&mut buf, &st.s.vocab, st.s.seed, position);
                    if position == 0
                        && let Some(stall) = st.stall.take()
                    {
                        // Send the first token now; the next poll sleeps before the rest.
                        st.stall_next = Some(stall);
                        break;
                    }
                }
                Some(Event::Done {
                    reason,
                    prompt_tokens,
                    completion_tokens,
                    cached_tokens,
                }) => {
                    st.chunks.closing(
                        &mut buf,
                        reason,
                        &usage_json(prompt_tokens, completion_tokens, cached_tokens),
                    );
                    st.done = true;
                    break;
                }
                Some(Event::Rejected(message)) => {
                    let err = json!({"error": {"message": message, "type": "BadRequestError", "param": null, "code": 400}});
                    buf.extend_from_slice(format!("data: {err}\n\ndata: [DONE]\n\n").as_bytes());
                    st.done = true;
                    break;
                }
                None => {
                    st.done = true;
                    return Some((
                        Err(std::io::Error::other("the engine dropped the request")),
                        st,
                    ));
                }
            }
            // Coalesce whatever else is ready into the same write.
            match st.rx.try_recv() {
                Ok(ev) => next = Some(ev),
                Err(_) => break,
            }
        }
        Some((Ok::<Bytes, std::io::Error>(buf.freeze()), st))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .expect("valid response")
}
