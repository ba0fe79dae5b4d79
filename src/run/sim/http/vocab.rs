//! The generated tokens' text: words that are one token each in the served tokenizer, so a
//! client counting tokens in the answer counts what the engine generated.

use crate::base::rng;
use crate::base::tokenizer::Tokenizer;

/// The text of generated tokens: single-token words, picked per position from the seed.
pub struct OutputVocab {
    /// JSON-escaped text of each piece, ready to splice into a chunk.
    pub(super) escaped: Vec<String>,
    pub(super) raw: Vec<String>,
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

    /// The piece generated at `position` of the answer to the prompt with content `key`.
    pub(super) fn index(&self, seed: u64, key: u64, position: u32) -> usize {
        (rng::mix(seed ^ key.rotate_left(17) ^ u64::from(position)) % self.raw.len() as u64)
            as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_piece_is_one_token_of_the_tokenizer() {
        let tok = Tokenizer::load(None).expect("o200k");
        let vocab = OutputVocab::new(&tok);
        assert!(vocab.raw.len() >= 8);
        for piece in &vocab.raw {
            assert_eq!(tok.encode(piece).expect("encodes").len(), 1, "{piece:?}");
        }
        for (raw, escaped) in vocab.raw.iter().zip(&vocab.escaped) {
            assert_eq!(&serde_json::from_str::<String>(escaped).expect("JSON"), raw);
        }
    }

    #[test]
    fn pieces_are_fixed_by_seed_prompt_and_position() {
        let vocab = OutputVocab::new(&Tokenizer::load(None).expect("o200k"));
        let picks: Vec<usize> = (0..64).map(|i| vocab.index(1, 2, i)).collect();
        assert!(picks.iter().all(|&i| i < vocab.raw.len()));
        assert_eq!(
            picks,
            (0..64).map(|i| vocab.index(1, 2, i)).collect::<Vec<_>>()
        );
        assert_ne!(
            picks,
            (0..64).map(|i| vocab.index(1, 3, i)).collect::<Vec<_>>()
        );
        assert_ne!(
            picks,
            (0..64).map(|i| vocab.index(2, 2, i)).collect::<Vec<_>>()
        );
    }
}
