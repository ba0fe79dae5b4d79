//! Writing an answer: pre-formatted OpenAI JSON pieces, streamed as server-sent events (with
//! the injected stall and stream drop) or collected into one JSON body.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use serde_json::json;
use tokio::sync::mpsc;

use super::super::engine::{Event, FinishReason};
use super::request::Api;
use super::vocab::OutputVocab;
use super::{AppState, error};

/// Pre-formatted pieces of a response's JSON, so each streamed token costs a few copies.
pub(super) struct Chunks {
    api: Api,
    head: String,
    token_prefix: String,
    token_suffix: &'static str,
    key: u64,
    include_usage: bool,
}

impl Chunks {
    /// The pieces for the `index`-th request, whose prompt has content `key`.
    pub(super) fn new(
        api: Api,
        model_name: &str,
        created: u64,
        include_usage: bool,
        index: u64,
        key: u64,
    ) -> Self {
        let model = serde_json::to_string(model_name).expect("a string serializes");
        let (id, object) = match api {
            Api::Completions => (format!("cmpl-{index}"), "text_completion"),
            Api::Chat => (format!("chatcmpl-{index}"), "chat.completion.chunk"),
        };
        let head = format!(
            r#"{{"id":"{id}","object":"{object}","created":{},"model":{model},"#,
            created
        );
        let (token_prefix, token_suffix) = match api {
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
            api,
            head,
            token_prefix,
            token_suffix,
            key,
            include_usage,
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

pub(super) async fn collect_response(
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

pub(super) fn stream_response(
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

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::base::tokenizer::Tokenizer;

    /// The JSON of each `data:` event in `buf`, and whether it ended with `[DONE]`.
    fn events(buf: &BytesMut) -> (Vec<Value>, bool) {
        let text = std::str::from_utf8(buf).expect("UTF-8");
        let mut done = false;
        let mut out = Vec::new();
        for event in text.split_terminator("\n\n") {
            let data = event.strip_prefix("data: ").expect("a data event");
            if data == "[DONE]" {
                done = true;
            } else {
                out.push(serde_json::from_str(data).expect("each event is JSON"));
            }
        }
        (out, done)
    }

    #[test]
    fn completion_chunks_are_openai_events() {
        let vocab = OutputVocab::new(&Tokenizer::load(None).expect("o200k"));
        let c = Chunks::new(Api::Completions, "m\"x", 77, true, 5, 9);
        let mut buf = BytesMut::new();
        c.opening(&mut buf);
        assert!(buf.is_empty(), "completions have no opening chunk");
        c.token(&mut buf, &vocab, 1, 0);
        c.closing(&mut buf, FinishReason::Length, &usage_json(10, 1, 4));
        let (ev, done) = events(&buf);
        assert!(done);
        assert_eq!(ev.len(), 3, "a token, the finish and the usage");
        assert_eq!(ev[0]["id"], "cmpl-5");
        assert_eq!(ev[0]["object"], "text_completion");
        assert_eq!(ev[0]["model"], "m\"x");
        assert_eq!(ev[0]["created"], 77);
        assert_eq!(
            ev[0]["choices"][0]["text"],
            vocab.raw[vocab.index(1, 9, 0)].as_str()
        );
        assert_eq!(ev[1]["choices"][0]["finish_reason"], "length");
        assert_eq!(ev[2]["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
        assert_eq!(ev[2]["usage"]["total_tokens"], 11);
    }

    #[test]
    fn chat_chunks_open_with_the_role_and_may_leave_out_usage() {
        let vocab = OutputVocab::new(&Tokenizer::load(None).expect("o200k"));
        let c = Chunks::new(Api::Chat, "m", 1, false, 2, 3);
        let mut buf = BytesMut::new();
        c.opening(&mut buf);
        c.token(&mut buf, &vocab, 1, 0);
        c.closing(&mut buf, FinishReason::Stop, &usage_json(1, 1, 0));
        let (ev, done) = events(&buf);
        assert!(done);
        assert_eq!(ev.len(), 3, "the role, a token and the finish; no usage");
        assert_eq!(ev[0]["id"], "chatcmpl-2");
        assert_eq!(ev[0]["choices"][0]["delta"]["role"], "assistant");
        assert!(ev[1]["choices"][0]["delta"]["content"].is_string());
        assert_eq!(ev[2]["choices"][0]["finish_reason"], "stop");
        assert!(ev.iter().all(|e| e.get("usage").is_none()));
    }
}
