//! The OpenAI-compatible API as a client sees it: one streamed request and what it measured
//! (`client`), the token ids a served vocabulary takes (`vocabulary`), and the preflight that
//! checks a server before a run (`preflight`). The replay and the synthetic testers both build
//! on it, so neither reaches into the other.

pub mod client;
pub mod preflight;
pub mod vocabulary;

/// Which endpoint prompts go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// `/v1/completions` with token-id prompts: exact lengths, no tokenizer involved.
    Completions,
    /// `/v1/chat/completions` with text.
    Chat,
}
