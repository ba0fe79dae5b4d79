//! One streamed request and what it measured.
//!
//! Bodies are written by hand (token ids with `itoa`) and streams are scanned in place: a content
//! chunk is recognised by its `"text":"` / `"content":"` key without parsing its JSON, so the
//! common path allocates nothing per chunk; only the final usage chunk is parsed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::data::trace::prompt::ChatWords;

use futures_util::StreamExt;
use serde::Deserialize;

/// How a request ended: the artifact schema's, since `requests.csv` records it.
pub use crate::data::artifact::schema::Outcome;

/// The server's token counts from the usage chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub cached_tokens: u32,
}

/// What one request measured, relative to its send time.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub ttft: Option<Duration>,
    /// Gaps between consecutive content chunks.
    pub gaps: Vec<Duration>,
    pub e2e: Duration,
    pub usage: Option<Usage>,
    pub(crate) content_chunks: u32,
    pub http_status: u16,
    pub error: Option<String>,
    pub(crate) timed_out: bool,
    /// The answer's stream ended in transport, before the server finished it.
    pub(crate) broke_off: bool,
    /// A 429 or 503's Retry-After, in seconds.
    pub(crate) retry_after: Option<Duration>,
}

impl Measured {
    /// A failure that says nothing about the request itself (rate limiting, a server error, a
    /// timeout, a stream cut in transport), so the same request may well succeed again.
    pub(crate) fn is_transient(&self) -> bool {
        self.http_status == 429 || self.http_status >= 500 || self.timed_out || self.broke_off
    }

    pub fn outcome(&self) -> Outcome {
        if self.timed_out {
            Outcome::Timeout
        } else if self.error.is_some() || self.http_status != 200 {
            Outcome::Error
        } else {
            Outcome::Ok
        }
    }
}

/// How a prompt's token ids go into a request.
#[derive(Clone)]
pub enum PromptEncoding {
    /// `/v1/completions` with `"prompt": [ids]`.
    Ids,
    /// `/v1/chat/completions` with one user message: one word per id, from words the server's
    /// tokenizer reads back as exactly those tokens.
    Words(Arc<ChatWords>),
}

/// A streamed request body: a prompt encoded into JSON while it is sent, so a 128k-token prompt
/// never exists twice in memory (as ids and as text); that is what lets 1,000 users at
/// 130k-token contexts fit in a small client. Cloning shares the tokens.
#[derive(Clone)]
pub struct PromptBody {
    head: Vec<u8>,
    tokens: Arc<Vec<u32>>,
    encoding: PromptEncoding,
    tail: Vec<u8>,
}

/// Token ids per chunk of the streamed body (about 50 KB of JSON).
const IDS_PER_CHUNK: usize = 8192;

impl PromptBody {
    pub fn new(
        model: &str,
        tokens: Arc<Vec<u32>>,
        encoding: PromptEncoding,
        max_tokens: u32,
        ignore_eos: bool,
    ) -> Self {
        let mut head = b"{\"model\":".to_vec();
        head.extend_from_slice(serde_json::to_string(model).unwrap_or_default().as_bytes());
        let mut tail = match encoding {
            PromptEncoding::Ids => {
                head.extend_from_slice(b",\"prompt\":[");
                b"],\"max_tokens\":".to_vec()
            }
            PromptEncoding::Words(_) => {
                head.extend_from_slice(b",\"messages\":[{\"role\":\"user\",\"content\":\"");
                b"\"}],\"max_tokens\":".to_vec()
            }
        };
        tail.extend_from_slice(itoa::Buffer::new().format(max_tokens.max(1)).as_bytes());
        if ignore_eos {
            tail.extend_from_slice(b",\"ignore_eos\":true");
        }
        tail.extend_from_slice(b",\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
        Self {
            head,
            tokens,
            encoding,
            tail,
        }
    }

    /// Bytes of the whole body, for `Content-Length`.
    pub(crate) fn content_length(&self) -> u64 {
        let prompt: u64 = match &self.encoding {
            PromptEncoding::Ids => {
                let digits: u64 = self
                    .tokens
                    .iter()
                    .map(|&t| u64::from(t.checked_ilog10().unwrap_or(0) + 1))
                    .sum();
                digits + self.tokens.len().saturating_sub(1) as u64
            }
            PromptEncoding::Words(words) => self
                .tokens
                .iter()
                .map(|&t| words.word(t).len() as u64)
                .sum(),
        };
        (self.head.len() + self.tail.len()) as u64 + prompt
    }

    /// The body as a stream of chunks, encoded as they are pulled.
    pub fn stream(
        self,
    ) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static
    {
        let Self {
            head,
            tokens,
            encoding,
            tail,
        } = self;
        let chunks = tokens.len().div_ceil(IDS_PER_CHUNK);
        let ids = futures_util::stream::iter(0..chunks).map(move |c| {
            let slice = &tokens[c * IDS_PER_CHUNK..((c + 1) * IDS_PER_CHUNK).min(tokens.len())];
            let mut out = Vec::with_capacity(slice.len() * 6);
            match &encoding {
                PromptEncoding::Ids => {
                    let mut buf = itoa::Buffer::new();
                    for (i, id) in slice.iter().enumerate() {
                        if c > 0 || i > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(buf.format(*id).as_bytes());
                    }
                }
                PromptEncoding::Words(words) => {
                    for &id in slice {
                        out.extend_from_slice(words.word(id).as_bytes());
                    }
                }
            }
            Ok(bytes::Bytes::from(out))
        });
        futures_util::stream::once(async move { Ok(bytes::Bytes::from(head)) })
            .chain(ids)
            .chain(futures_util::stream::once(async move {
                Ok(bytes::Bytes::from(tail))
            }))
    }
}

#[derive(Deserialize)]
struct UsageChunk {
    usage: Option<UsageBody>,
}

#[derive(Deserialize)]
struct UsageBody {
    prompt_tokens: u32,
    completion_tokens: u32,
    prompt_tokens_details: Option<Details>,
}

#[derive(Deserialize)]
struct Details {
    cached_tokens: Option<u32>,
}

/// Splits a byte stream into server-sent events, reusing one buffer.
#[derive(Default)]
pub(crate) struct SseScanner {
    buf: Vec<u8>,
}

impl SseScanner {
    /// Feeds bytes; calls `on_data` with each complete event's `data:` payload.
    pub(crate) fn feed(&mut self, bytes: &[u8], mut on_data: impl FnMut(&[u8])) {
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some((end, sep)) = event_end(&self.buf[start..]) {
            let event = &self.buf[start..start + end];
            for line in event.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if let Some(data) = line.strip_prefix(b"data:") {
                    on_data(data.strip_prefix(b" ").unwrap_or(data));
                }
            }
            start += end + sep;
        }
        self.buf.drain(..start);
    }
}

/// Where the first event in `b` ends and how long the blank line after it is: "\n\n", or
/// "\r\n\r\n" from servers that use CRLF. Both are looked for in one pass from the start:
/// searching for each separator over the whole rest of the buffer, once per event, made a chunk
/// of many LF-separated events quadratic (the CRLF search ran to the end every time; it was
/// most of the replay client's time in `cargo bench --bench replay`).
fn event_end(b: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(at) = b[from..].iter().position(|&c| c == b'\n') {
        let p = from + at;
        match b.get(p + 1) {
            Some(b'\n') => return Some((p, 2)),
            Some(b'\r') if p > 0 && b[p - 1] == b'\r' && b.get(p + 2) == Some(&b'\n') => {
                return Some((p - 1, 4));
            }
            _ => from = p + 1,
        }
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether a chunk carries generated text: a non-empty `"text"` or `"content"` string.
fn has_content(data: &[u8]) -> bool {
    [&b"\"text\":\""[..], &b"\"content\":\""[..]]
        .iter()
        .any(|key| {
            find(data, key).is_some_and(|at| data.get(at + key.len()).is_some_and(|&b| b != b'"'))
        })
}

/// What happened to one `data:` payload.
enum Event {
    Content,
    Usage(Usage),
    Error(String),
    Done,
    Other,
}

fn classify(data: &[u8]) -> Event {
    if data == b"[DONE]" {
        return Event::Done;
    }
    if is_error_event(data) {
        return Event::Error(error_message(data));
    }
    if has_content(data) {
        return Event::Content;
    }
    if find(data, b"\"usage\":{").is_some()
        && let Ok(UsageChunk { usage: Some(u) }) = serde_json::from_slice(data)
    {
        return Event::Usage(Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            cached_tokens: u
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
        });
    }
    Event::Other
}

/// Whether a payload is an error event: a JSON object whose first key is `error` (vLLM, SGLang and
/// kvsweep's simulator send `{"error": {...}}`) or whose `object` is `"error"`. Servers send one
/// inside an HTTP 200 stream when a request fails after the headers went out (vLLM: a token id
/// out of vocabulary); key order and spacing are as `json.dumps` and serde_json write them.
fn is_error_event(data: &[u8]) -> bool {
    let Some(body) = data.strip_prefix(b"{").map(<[u8]>::trim_ascii_start) else {
        return false;
    };
    if body.starts_with(b"\"error\"") {
        return true;
    }
    body.strip_prefix(b"\"object\"")
        .map(<[u8]>::trim_ascii_start)
        .and_then(|rest| rest.strip_prefix(b":"))
        .is_some_and(|rest| rest.trim_ascii_start().starts_with(b"\"error\""))
}

/// The message of an error event (`error.message`, else `message`), else the payload itself.
fn error_message(data: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(data).ok();
    let message = parsed.as_ref().and_then(|v| {
        let error = &v["error"];
        error["message"]
            .as_str()
            .or_else(|| error.as_str())
            .or_else(|| v["message"].as_str())
    });
    match message {
        Some(m) => format!("error event in the stream: {m}"),
        None => format!(
            "error event in the stream: {}",
            String::from_utf8_lossy(data)
                .chars()
                .take(300)
                .collect::<String>()
        ),
    }
}

/// Sends one request and measures its answer; `first_token` runs when the first content arrives.
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    session_id: &str,
    body: PromptBody,
    timeout: Duration,
    first_token: impl FnOnce(),
) -> Measured {
    let sent = Instant::now();
    let mut m = Measured::default();
    let mut first_token = Some(first_token);
    let exchange = async {
        let resp = client
            .post(url)
            .header("content-type", "application/json")
            .header("x-session-id", session_id)
            .header("content-length", body.content_length())
            .body(reqwest::Body::wrap_stream(body.stream()))
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                m.error = Some(format!("request failed: {e}"));
                return;
            }
        };
        m.http_status = resp.status().as_u16();
        m.retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        if !resp.status().is_success() {
            let text = resp.text().await.unwrap_or_default();
            m.error = Some(format!(
                "HTTP {}: {}",
                m.http_status,
                text.chars().take(300).collect::<String>()
            ));
            return;
        }
        let mut scanner = SseScanner::default();
        let mut stream = resp.bytes_stream();
        let mut last: Option<Instant> = None;
        let mut done = false;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    m.error = Some(format!("stream broke off: {e}"));
                    m.broke_off = true;
                    return;
                }
            };
            let now = Instant::now();
            scanner.feed(&chunk, |data| match classify(data) {
                Event::Content => {
                    m.content_chunks += 1;
                    match last {
                        None => {
                            m.ttft = Some(now - sent);
                            if let Some(f) = first_token.take() {
                                f();
                            }
                        }
                        Some(prev) => m.gaps.push(now - prev),
                    }
                    last = Some(now);
                }
                Event::Usage(u) => m.usage = Some(u),
                Event::Error(e) => m.error = Some(e),
                Event::Done => done = true,
                Event::Other => {}
            });
        }
        if !done && m.error.is_none() {
            m.error = Some("the stream ended without [DONE]".into());
        }
    };
    if tokio::time::timeout(timeout, exchange).await.is_err() {
        m.timed_out = true;
        m.error = Some(format!("no complete answer within {}s", timeout.as_secs()));
    }
    m.e2e = sent.elapsed();
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_handles_events_split_across_reads() {
        let mut s = SseScanner::default();
        let mut seen = Vec::new();
        s.feed(b"data: {\"a\":1}\n\nda", |d| seen.push(d.to_vec()));
        s.feed(b"ta: [DONE]\r\n\r\n", |d| seen.push(d.to_vec()));
        s.feed(b"\n\n", |d| seen.push(d.to_vec()));
        assert_eq!(seen, [b"{\"a\":1}".to_vec(), b"[DONE]".to_vec()]);
        let mut s = SseScanner::default();
        let mut seen = Vec::new();
        s.feed(b"data: x\n\ndata: [DONE]\n\n", |d| seen.push(d.to_vec()));
        assert_eq!(seen, [b"x".to_vec(), b"[DONE]".to_vec()]);
    }

    #[test]
    fn the_first_blank_line_is_found_as_the_two_separate_searches_found_it() {
        // Every string of up to 8 bytes over {a, \r, \n}: the one-pass scan against the
        // first "\n\n" or "\r\n\r\n", whichever starts first.
        let two_searches = |b: &[u8]| {
            [&b"\n\n"[..], &b"\r\n\r\n"[..]]
                .iter()
                .filter_map(|sep| find(b, sep).map(|at| (at, sep.len())))
                .min()
        };
        let mut checked = 0;
        for len in 0..=8u32 {
            for code in 0..3usize.pow(len) {
                let b: Vec<u8> = (0..len)
                    .map(|i| b"a\r\n"[code / 3usize.pow(i) % 3])
                    .collect();
                assert_eq!(
                    event_end(&b),
                    two_searches(&b),
                    "{:?}",
                    String::from_utf8_lossy(&b)
                );
                checked += 1;
            }
        }
        assert_eq!(checked, (0..=8).map(|n| 3usize.pow(n)).sum::<usize>());
    }

    #[test]
    fn chunks_are_classified_without_parsing_content() {
        assert!(matches!(
            classify(br#"{"choices":[{"index":0,"text":" hi","finish_reason":null}]}"#),
            Event::Content
        ));
        assert!(matches!(
            classify(br#"{"choices":[{"delta":{"content":"x"}}]}"#),
            Event::Content
        ));
        assert!(matches!(
            classify(br#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#),
            Event::Other
        ));
        assert!(matches!(
            classify(br#"{"choices":[{"text":"","finish_reason":"stop"}]}"#),
            Event::Other
        ));
        match classify(br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7,"prompt_tokens_details":{"cached_tokens":3}}}"#) {
            Event::Usage(u) => assert_eq!(u, Usage { prompt_tokens: 5, completion_tokens: 2, cached_tokens: 3 }),
            _ => panic!("usage chunk not recognised"),
        }
        assert!(matches!(classify(b"[DONE]"), Event::Done));
    }

    #[test]
    fn error_events_are_recognised_in_any_spacing() {
        let vllm = br#"{"error": {"message": "Token id 29999 is out of vocabulary", "type": "BadRequestError", "param": null, "code": 400}}"#;
        for (data, message) in [
            (&vllm[..], "Token id 29999 is out of vocabulary"),
            (br#"{"error":{"message":"x"}}"#, "x"),
            (br#"{ "error": "overloaded" }"#, "overloaded"),
            (
                br#"{"object": "error", "message": "bad", "code": 400}"#,
                "bad",
            ),
            (
                br#"{"object":"error","detail":1}"#,
                r#"{"object":"error","detail":1}"#,
            ),
        ] {
            match classify(data) {
                Event::Error(e) => assert_eq!(e, format!("error event in the stream: {message}")),
                _ => panic!("{} not seen as an error", String::from_utf8_lossy(data)),
            }
        }
        for data in [
            &br#"{"object":"text_completion","choices":[{"text":"error"}]}"#[..],
            br#"{"id":"x","object":"chat.completion.chunk","choices":[]}"#,
            br#"{"errors_seen":0}"#,
        ] {
            assert!(
                !matches!(classify(data), Event::Error(_)),
                "{}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[tokio::test]
    async fn body_is_valid_json_of_the_announced_length() {
        let tokens: Vec<u32> = (0..20_000).map(|i| i * 7 % 30_000).collect();
        let body = PromptBody::new(
            "m\"x",
            Arc::new(tokens.clone()),
            PromptEncoding::Ids,
            7,
            true,
        );
        let len = body.content_length();
        let chunks: Vec<bytes::Bytes> = body.stream().map(|c| c.expect("chunk")).collect().await;
        let bytes: Vec<u8> = chunks.concat();
        assert_eq!(bytes.len() as u64, len);
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["prompt"], serde_json::json!(tokens));
        assert_eq!(v["model"], "m\"x");
        assert_eq!(v["max_tokens"], 7);
        assert_eq!(v["ignore_eos"], true);
        assert_eq!(v["stream_options"]["include_usage"], true);
        let empty = PromptBody::new("m", Arc::new(Vec::new()), PromptEncoding::Ids, 1, false);
        let n = empty.content_length();
        let bytes: Vec<u8> = empty
            .stream()
            .map(|c| c.expect("chunk"))
            .collect::<Vec<_>>()
            .await
            .concat();
        assert_eq!(bytes.len() as u64, n);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&bytes).expect("json")["prompt"],
            serde_json::json!([])
        );
    }
}
