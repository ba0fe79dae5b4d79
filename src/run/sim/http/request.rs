//! Request parsing: OpenAI completion and chat bodies into one [`Prepared`] request, with the
//! status codes an OpenAI-compatible server answers for bad ones (400 for bad syntax or values,
//! 422 for a body of the wrong shape, 413 for one too large).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::Deserialize;

use super::{ApiError, api_error};
use crate::base::tokenizer::{ChatMessage, Tokenizer, render_chat};

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
pub(super) struct CompletionBody {
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
pub(super) struct ChatBody {
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
pub(super) enum Api {
    Completions,
    Chat,
}

/// A validated request, before the engine sees it.
#[derive(Debug)]
pub(super) struct Prepared {
    pub(super) api: Api,
    pub(super) model: Option<String>,
    pub(super) prompt: Vec<u32>,
    pub(super) max_tokens: Option<i64>,
    pub(super) min_tokens: Option<i64>,
    pub(super) ignore_eos: bool,
    pub(super) stream: bool,
    pub(super) include_usage: bool,
}

/// Parses a JSON body: bad syntax is 400, a body of the wrong shape 422 (as FastAPI answers).
pub(super) fn parse_json<T: for<'de> Deserialize<'de>>(
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

impl Prepared {
    /// A `/v1/completions` request: a text prompt is tokenized, token ids must be inside the
    /// vocabulary, and a batch of prompts is refused.
    pub(super) fn completion(req: CompletionBody, tokenizer: &Tokenizer) -> Result<Self, ApiError> {
        let prompt = match req.prompt {
            PromptInput::Text(text) => tokenizer
                .encode(&text)
                .map_err(|e| api_error(StatusCode::BAD_REQUEST, e.to_string()))?,
            PromptInput::Ids(ids) => {
                if let Some(bad) = ids.iter().find(|&&id| id >= tokenizer.vocab_size()) {
                    return Err(api_error(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "token id {bad} is out of vocabulary (size {})",
                            tokenizer.vocab_size()
                        ),
                    ));
                }
                ids
            }
            PromptInput::Batch(n) => {
                return Err(api_error(
                    StatusCode::BAD_REQUEST,
                    format!("a batch of {n} prompts is not supported: send one prompt per request"),
                ));
            }
        };
        Ok(Self {
            api: Api::Completions,
            model: req.model,
            prompt,
            max_tokens: req.max_tokens,
            min_tokens: req.min_tokens,
            ignore_eos: req.ignore_eos.unwrap_or(false),
            stream: req.stream.unwrap_or(false),
            include_usage: include_usage(req.stream_options),
        })
    }

    /// A `/v1/chat/completions` request: the messages' text (only text content parts) rendered
    /// with the chat template and tokenized; `max_completion_tokens` wins over `max_tokens`.
    pub(super) fn chat(req: ChatBody, tokenizer: &Tokenizer) -> Result<Self, ApiError> {
        if req.messages.is_empty() {
            return Err(api_error(
                StatusCode::BAD_REQUEST,
                "messages must not be empty",
            ));
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
                                return Err(api_error(
                                    StatusCode::BAD_REQUEST,
                                    format!(
                                        "messages[{i}]: content part of type `{kind}` is not supported"
                                    ),
                                ));
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
        let prompt = tokenizer
            .encode(&render_chat(&messages))
            .map_err(|e| api_error(StatusCode::BAD_REQUEST, e.to_string()))?;
        Ok(Self {
            api: Api::Chat,
            model: req.model,
            prompt,
            max_tokens: req.max_completion_tokens.or(req.max_tokens),
            min_tokens: req.min_tokens,
            ignore_eos: req.ignore_eos.unwrap_or(false),
            stream: req.stream.unwrap_or(false),
            include_usage: include_usage(req.stream_options),
        })
    }
}

/// Whether a streamed answer ends with a usage chunk (`stream_options.include_usage`).
fn include_usage(options: Option<StreamOptions>) -> bool {
    options.and_then(|o| o.include_usage).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> Result<Bytes, BytesRejection> {
        Ok(Bytes::copy_from_slice(json.as_bytes()))
    }

    fn prompt(json: &str) -> PromptInput {
        serde_json::from_str(json).expect("a prompt")
    }

    fn tokenizer() -> Tokenizer {
        Tokenizer::load(None).expect("o200k")
    }

    #[test]
    fn prompts_are_text_ids_or_a_refused_batch() {
        assert!(matches!(prompt(r#""hello""#), PromptInput::Text(t) if t == "hello"));
        assert!(matches!(prompt("[5, 6, 7]"), PromptInput::Ids(ids) if ids == [5, 6, 7]));
        assert!(matches!(prompt("[]"), PromptInput::Ids(ids) if ids.is_empty()));
        assert!(matches!(
            prompt(r#"["a", "b", "c"]"#),
            PromptInput::Batch(3)
        ));
        assert!(matches!(prompt("[[1, 2], [3]]"), PromptInput::Batch(2)));
        assert!(serde_json::from_str::<PromptInput>("[4294967296]").is_err());
        assert!(serde_json::from_str::<PromptInput>("[1, \"x\"]").is_err());
        assert!(serde_json::from_str::<PromptInput>("7").is_err());
    }

    #[test]
    fn bad_syntax_is_400_and_a_wrong_shape_422() {
        let syntax = parse_json::<CompletionBody>(body("{")).expect_err("bad syntax");
        assert_eq!(syntax.status, StatusCode::BAD_REQUEST);
        let shape =
            parse_json::<CompletionBody>(body(r#"{"max_tokens": 3}"#)).expect_err("no prompt");
        assert_eq!(shape.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            shape.message.starts_with("invalid request body"),
            "{}",
            shape.message
        );
    }

    #[test]
    fn completion_ids_must_be_in_the_vocabulary() {
        let tok = tokenizer();
        let req = parse_json(body(&format!(r#"{{"prompt": [1, {}]}}"#, tok.vocab_size())))
            .expect("parses");
        let err = Prepared::completion(req, &tok).expect_err("out of vocabulary");
        assert!(err.message.contains("out of vocabulary"), "{}", err.message);
        let req = parse_json(body(r#"{"prompt": ["a", "b"]}"#)).expect("parses");
        let err = Prepared::completion(req, &tok).expect_err("a batch");
        assert!(err.message.contains("batch of 2"), "{}", err.message);
    }

    #[test]
    fn a_completion_keeps_its_settings() {
        let req = parse_json(body(
            r#"{"model": "m", "prompt": [10, 11], "max_tokens": 4, "min_tokens": 2,
                "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true}}"#,
        ))
        .expect("parses");
        let p = Prepared::completion(req, &tokenizer()).expect("valid");
        assert_eq!(p.api, Api::Completions);
        assert_eq!(p.model.as_deref(), Some("m"));
        assert_eq!(p.prompt, [10, 11]);
        assert_eq!((p.max_tokens, p.min_tokens), (Some(4), Some(2)));
        assert!(p.ignore_eos && p.stream && p.include_usage);
        let req = parse_json(body(r#"{"prompt": "hello world"}"#)).expect("parses");
        let p = Prepared::completion(req, &tokenizer()).expect("valid");
        assert!(!p.prompt.is_empty() && !p.stream && !p.include_usage && !p.ignore_eos);
    }

    #[test]
    fn chat_takes_text_parts_and_prefers_max_completion_tokens() {
        let req = parse_json(body(
            r#"{"messages": [{"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                "max_tokens": 9, "max_completion_tokens": 3}"#,
        ))
        .expect("parses");
        let p = Prepared::chat(req, &tokenizer()).expect("valid");
        assert_eq!(p.api, Api::Chat);
        assert_eq!(p.max_tokens, Some(3));
        assert!(!p.prompt.is_empty());
    }

    #[test]
    fn chat_refuses_no_messages_and_non_text_parts() {
        let req = parse_json(body(r#"{"messages": []}"#)).expect("parses");
        let err = Prepared::chat(req, &tokenizer()).expect_err("empty");
        assert!(err.message.contains("must not be empty"));
        let req = parse_json(body(
            r#"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#,
        ))
        .expect("parses");
        let err = Prepared::chat(req, &tokenizer()).expect_err("an image");
        assert_eq!(
            err.message,
            "messages[0]: content part of type `image_url` is not supported"
        );
    }
}
