//! Prompts that make the server see exactly the sharing a trace describes.
//!
//! Each (scope, hash id) becomes one fixed block of `block_size` token ids, so equal ids give
//! identical blocks and different ids different ones; the prompt is the blocks in order, then
//! request-unique filler up to exactly the trace's input length. A session's next prompt reuses the
//! previous one's tokens up to the first hash id that differs, so extending a long context costs
//! only its new blocks.

use crate::base::rng::mix;
use crate::base::tokenizer::Tokenizer;

/// Token ids are drawn from `[lo, lo + span)`: well inside any modern vocabulary (even 32k ones),
/// and clear of the low ids where tokenizers keep their special tokens.
#[derive(Debug, Clone, Copy)]
pub struct TokenRange {
    pub lo: u32,
    pub span: u32,
}

impl Default for TokenRange {
    fn default() -> Self {
        Self {
            lo: 1000,
            span: 29_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct PromptBuilder {
    pub seed: u64,
    pub range: TokenRange,
}

/// A session's last prompt, kept to build the next one incrementally.
#[derive(Debug, Clone, Default)]
pub struct PromptState {
    tokens: Vec<u32>,
    /// Hash ids whose blocks start `tokens`.
    hashes: Vec<u64>,
}

impl PromptState {
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Hands the tokens out for a request without copying them; [`PromptState::restore`] takes
    /// them back once the request is done.
    pub(crate) fn lend(&mut self) -> std::sync::Arc<Vec<u32>> {
        std::sync::Arc::new(std::mem::take(&mut self.tokens))
    }

    pub(crate) fn restore(&mut self, tokens: std::sync::Arc<Vec<u32>>) {
        self.tokens =
            std::sync::Arc::try_unwrap(tokens).unwrap_or_else(|shared| shared.as_ref().clone());
    }
}

impl PromptBuilder {
    fn token(&self, key: u64, j: u64) -> u32 {
        self.range.lo
            + (mix(key ^ j.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % u64::from(self.range.span)) as u32
    }

    fn block_key(&self, scope: u64, hash_id: u64) -> u64 {
        mix(self.seed ^ scope.rotate_left(29) ^ mix(hash_id))
    }

    /// Builds the prompt of a request of `input_tokens` tokens whose leading blocks are
    /// `hash_ids`, reusing `state` (the session's previous prompt). `unique_key` makes the filler
    /// request-unique. `overhead` tokens are left for what the server adds itself (a chat
    /// template): they come out of the unique tail first, and only then out of the last block.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        &self,
        state: &mut PromptState,
        scope: u64,
        block_size: u32,
        hash_ids: &[u64],
        input_tokens: u32,
        overhead: u32,
        unique_key: u64,
    ) {
        let bs = block_size as usize;
        let len = input_tokens.saturating_sub(overhead).max(1) as usize;
        let full = hash_ids.len().min(input_tokens as usize / bs);
        let ids = &hash_ids[..full];
        let shared = state
            .hashes
            .iter()
            .zip(ids)
            .take_while(|(a, b)| a == b)
            .count();
        state.tokens.truncate(shared * bs);
        state.hashes.truncate(shared);
        state.tokens.reserve(len.saturating_sub(state.tokens.len()));
        for &h in &ids[shared..] {
            let key = self.block_key(scope, h);
            state
                .tokens
                .extend((0..bs as u64).map(|j| self.token(key, j)));
            state.hashes.push(h);
        }
        if state.tokens.len() > len {
            // The server's own tokens cut into the last blocks: keep only whole blocks' hashes.
            state.tokens.truncate(len);
            state.hashes.truncate(len / bs);
        }
        let fill_key = mix(self.seed ^ 0xF111_F111 ^ mix(unique_key));
        let start = state.tokens.len() as u64;
        state
            .tokens
            .extend((start..len as u64).map(|j| self.token(fill_key, j)));
    }
}

/// Words for chat prompts: each is one token of the server's tokenizer (a space and lowercase
/// letters), and any sequence of them tokenizes back to exactly those tokens, so a chat prompt's
/// token count and its block sharing are as exact as with token ids.
#[derive(Debug, Clone)]
pub struct ChatWords {
    words: Vec<String>,
    range: TokenRange,
}

impl ChatWords {
    /// Collects round-trip-safe words from the tokenizer's vocabulary.
    pub(crate) fn from_tokenizer(tok: &Tokenizer, range: TokenRange) -> anyhow::Result<Self> {
        let mut words = Vec::new();
        for id in 0..tok.vocab_size() {
            let Ok(text) = tok.decode(&[id]) else {
                continue;
            };
            let safe = text.len() >= 4
                && text.starts_with(' ')
                && text[1..].bytes().all(|b| b.is_ascii_lowercase())
                && tok.encode(&text).is_ok_and(|ids| ids == [id]);
            if safe {
                words.push(text);
            }
            if words.len() as u32 == range.span {
                break;
            }
        }
        anyhow::ensure!(
            words.len() >= 256,
            "the tokenizer `{}` has only {} single-token words: chat prompts cannot be exact",
            tok.name(),
            words.len()
        );
        let chat = Self { words, range };
        // The property the prompts rely on: a run of words encodes back to one token each.
        let probe: String = (0..2000u32)
            .map(|i| chat.word(range.lo + i * 7919 % range.span))
            .collect();
        let ids = tok.encode(&probe)?;
        anyhow::ensure!(
            ids.len() == 2000,
            "words of `{}` merge when joined: {} tokens for 2000 words",
            tok.name(),
            ids.len()
        );
        Ok(chat)
    }

    /// The word standing for token id `id` (an id of the prompt builder's range).
    pub fn word(&self, id: u32) -> &str {
        &self.words[(id.wrapping_sub(self.range.lo) as usize) % self.words.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> PromptBuilder {
        PromptBuilder {
            seed: 1,
            range: TokenRange::default(),
        }
    }

    #[test]
    fn equal_ids_give_equal_blocks_and_exact_lengths() {
        let b = builder();
        let (mut s1, mut s2) = (PromptState::default(), PromptState::default());
        b.build(&mut s1, 7, 4, &[10, 11, 12], 14, 0, 1);
        b.build(&mut s2, 7, 4, &[10, 11, 99], 14, 0, 2);
        assert_eq!(s1.tokens().len(), 14);
        assert_eq!(s1.tokens()[..8], s2.tokens()[..8]);
        assert_ne!(s1.tokens()[8..12], s2.tokens()[8..12]);
        assert_ne!(
            s1.tokens()[12..],
            s2.tokens()[12..],
            "filler is request-unique"
        );
        assert!(s1.tokens().iter().all(|t| (1000..30_000).contains(t)));
    }

    #[test]
    fn scopes_keep_equal_ids_apart() {
        let b = builder();
        let (mut s1, mut s2) = (PromptState::default(), PromptState::default());
        b.build(&mut s1, 1, 4, &[10], 4, 0, 1);
        b.build(&mut s2, 2, 4, &[10], 4, 0, 1);
        assert_ne!(s1.tokens(), s2.tokens());
    }

    #[test]
    fn incremental_build_equals_a_fresh_build() {
        let b = builder();
        let mut state = PromptState::default();
        b.build(&mut state, 3, 64, &[1, 2, 3], 200, 0, 1);
        b.build(&mut state, 3, 64, &[1, 2, 3, 4, 5], 330, 0, 2); // extends
        let mut fresh = PromptState::default();
        b.build(&mut fresh, 3, 64, &[1, 2, 3, 4, 5], 330, 0, 2);
        assert_eq!(state.tokens(), fresh.tokens());
        b.build(&mut state, 3, 64, &[1, 9], 140, 0, 3); // drops back, then diverges
        let mut fresh = PromptState::default();
        b.build(&mut fresh, 3, 64, &[1, 9], 140, 0, 3);
        assert_eq!(state.tokens(), fresh.tokens());
    }

    #[test]
    fn chat_words_round_trip_through_o200k() {
        let tok = Tokenizer::load(None).expect("o200k");
        let words = ChatWords::from_tokenizer(&tok, TokenRange::default()).expect("words");
        let b = builder();
        let mut s = PromptState::default();
        b.build(&mut s, 1, 64, &[1, 2, 3], 700, 0, 9);
        let text: String = s.tokens().iter().map(|&t| words.word(t)).collect();
        assert_eq!(tok.encode(&text).expect("encode").len(), 700);
    }

    #[test]
    fn overhead_comes_out_of_the_tail_first_then_the_last_block() {
        let b = builder();
        let (mut full, mut tail_cut, mut block_cut) = (
            PromptState::default(),
            PromptState::default(),
            PromptState::default(),
        );
        b.build(&mut full, 1, 64, &[1, 2], 140, 0, 1);
        b.build(&mut tail_cut, 1, 64, &[1, 2], 140, 10, 1);
        b.build(&mut block_cut, 1, 64, &[1, 2], 140, 20, 1);
        assert_eq!(tail_cut.tokens().len(), 130);
        assert_eq!(
            tail_cut.tokens()[..128],
            full.tokens()[..128],
            "both blocks kept"
        );
        assert_eq!(block_cut.tokens().len(), 120);
        assert_eq!(
            block_cut.tokens()[..120],
            full.tokens()[..120],
            "the last block is cut, not replaced"
        );
        // The next prompt of the session rebuilds the cut block whole.
        b.build(&mut block_cut, 1, 64, &[1, 2, 3], 300, 20, 2);
        let mut fresh = PromptState::default();
        b.build(&mut fresh, 1, 64, &[1, 2, 3], 300, 20, 2);
        assert_eq!(block_cut.tokens(), fresh.tokens());
    }

    #[test]
    fn more_hash_ids_than_the_input_holds_are_ignored() {
        let b = builder();
        let mut s = PromptState::default();
        b.build(&mut s, 1, 64, &[1, 2, 3], 100, 0, 1);
        assert_eq!(s.tokens().len(), 100);
    }
}
