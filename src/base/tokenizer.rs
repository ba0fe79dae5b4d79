//! Tokenizers shared by the simulated server and the replay client, so both count the same tokens.
//!
//! The default is tiktoken's o200k_base (embedded in `tiktoken-rs`, no download); a Hugging Face
//! `tokenizer.json` can be given instead. Special tokens are never parsed out of text: a prompt is
//! always encoded as ordinary text.

use std::path::Path;

use anyhow::{Context, Result};

/// Tokens in o200k_base, special tokens included (ids above are out of vocabulary).
const O200K_VOCAB: u32 = 200_019;

pub enum Tokenizer {
    Tiktoken(&'static tiktoken_rs::CoreBPE),
    HuggingFace(Box<tokenizers::Tokenizer>),
}

impl Tokenizer {
    /// `path` names a Hugging Face `tokenizer.json`; `None` is o200k_base.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        match path {
            None => Ok(Tokenizer::Tiktoken(tiktoken_rs::o200k_base_singleton())),
            Some(path) => {
                let tok = tokenizers::Tokenizer::from_file(path)
                    .map_err(|e| anyhow::anyhow!("{e}"))
                    .with_context(|| format!("cannot load tokenizer {}", path.display()))?;
                Ok(Tokenizer::HuggingFace(Box::new(tok)))
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Tokenizer::Tiktoken(_) => "o200k_base",
            Tokenizer::HuggingFace(_) => "tokenizer.json",
        }
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Tokenizer::Tiktoken(bpe) => Ok(bpe.encode_ordinary(text)),
            Tokenizer::HuggingFace(tok) => tok
                .encode(text, false)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| anyhow::anyhow!("cannot tokenize: {e}")),
        }
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match self {
            Tokenizer::Tiktoken(bpe) => bpe.decode(ids).map_err(|e| anyhow::anyhow!("{e}")),
            Tokenizer::HuggingFace(tok) => tok
                .decode(ids, false)
                .map_err(|e| anyhow::anyhow!("cannot decode: {e}")),
        }
    }

    /// Number of token ids; ids at or above it are rejected.
    pub(crate) fn vocab_size(&self) -> u32 {
        match self {
            Tokenizer::Tiktoken(_) => O200K_VOCAB,
            Tokenizer::HuggingFace(tok) => {
                u32::try_from(tok.get_vocab_size(true)).unwrap_or(u32::MAX)
            }
        }
    }
}

/// One chat message: a role and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// The chat template (ChatML): each message as `<|im_start|>{role}\n{content}<|im_end|>\n`, then
/// `<|im_start|>assistant\n` to open the reply. Its marker strings are tokenized as plain text.
pub fn render_chat(messages: &[ChatMessage]) -> String {
    let mut out = String::with_capacity(messages.iter().map(|m| m.content.len() + 32).sum());
    for m in messages {
        out.push_str("<|im_start|>");
        out.push_str(&m.role);
        out.push('\n');
        out.push_str(&m.content);
        out.push_str("<|im_end|>\n");
    }
    out.push_str("<|im_start|>assistant\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn o200k_round_trips_plain_text() {
        let tok = Tokenizer::load(None).expect("o200k");
        let ids = tok
            .encode("Hello, world! The cache is warm.")
            .expect("encode");
        assert!(ids.len() > 5 && ids.len() < 15, "{ids:?}");
        assert_eq!(
            tok.decode(&ids).expect("decode"),
            "Hello, world! The cache is warm."
        );
        assert!(ids.iter().all(|&id| id < tok.vocab_size()));
    }

    #[test]
    fn special_token_text_is_ordinary_text() {
        let tok = Tokenizer::load(None).expect("o200k");
        let ids = tok.encode("<|endoftext|>").expect("encode");
        assert!(
            ids.len() > 1,
            "must not become the single special token: {ids:?}"
        );
    }

    #[test]
    fn chat_template_wraps_each_message() {
        let text = render_chat(&[
            ChatMessage {
                role: "system".into(),
                content: "be brief".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: "hi".into(),
            },
        ]);
        assert_eq!(
            text,
            "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }
}
