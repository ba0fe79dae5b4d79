//! The OpenAI-compatible API as a client sees it: one streamed request and what it measured
//! (`client`), the token ids a served vocabulary takes (`vocabulary`), and the preflight that
//! checks a server before a run (`preflight`). The replay and the synthetic testers both build
//! on it, so neither reaches into the other.

pub mod client;
pub mod preflight;
pub mod vocabulary;

pub use crate::base::kinds::Api;
