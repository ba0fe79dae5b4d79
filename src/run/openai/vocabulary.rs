//! Token ids that the served model's vocabulary holds.
//!
//! Completions prompts are token ids drawn from a range ([`TokenRange`]); a server rejects an id
//! at or above its vocabulary's size (vLLM: `Token id 29999 is out of vocabulary`, inside an HTTP
//! 200 stream). The default range fits any modern vocabulary; a small one (a test model's 2,048
//! tokens) needs a range of its own, sized from the model's tokenizer.

use anyhow::{Result, ensure};

use crate::data::trace::prompt::TokenRange;

/// Fewest ids a prompt may draw from: fewer would make unrelated blocks likely to repeat.
const MIN_IDS: u32 = 256;

/// The range of completions token ids for a vocabulary of `vocab_size` ids: the default range
/// where it fits, else the vocabulary's upper three quarters (its low ids are where tokenizers
/// keep special tokens and raw bytes).
pub(crate) fn ids_within(vocab_size: u32) -> Result<TokenRange> {
    let default = TokenRange::default();
    if default.lo + default.span <= vocab_size {
        return Ok(default);
    }
    let lo = (vocab_size / 4).min(default.lo);
    let span = vocab_size - lo;
    ensure!(
        span >= MIN_IDS,
        "a vocabulary of {vocab_size} tokens leaves {span} ids for prompts of random token ids; want at least {MIN_IDS}"
    );
    Ok(TokenRange { lo, span })
}

/// The highest id a prompt of `range` may contain.
pub fn highest(range: TokenRange) -> u32 {
    range.lo + range.span - 1
}

/// Whether a server's error message blames the vocabulary (vLLM: "Token id N is out of
/// vocabulary"; kvsweep's simulator says the same).
pub(crate) fn blames_vocabulary(error: &str) -> bool {
    error.to_ascii_lowercase().contains("vocab")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_vocabularies_keep_the_default_range() {
        for vocab in [30_000, 32_000, 128_256, 200_019] {
            let r = ids_within(vocab).expect("range");
            assert_eq!((r.lo, r.span), (1000, 29_000), "vocab {vocab}");
        }
    }

    #[test]
    fn small_vocabularies_get_their_upper_ids() {
        let r = ids_within(2048).expect("range");
        assert_eq!((r.lo, highest(r)), (512, 2047));
        let r = ids_within(29_999).expect("range");
        assert_eq!((r.lo, highest(r)), (1000, 29_998));
        let r = ids_within(341).expect("range");
        assert_eq!((r.lo, r.span), (85, 256));
        let err = ids_within(300).expect_err("too small").to_string();
        assert!(err.contains("300 tokens leaves 225 ids"), "{err}");
    }

    #[test]
    fn vocabulary_errors_are_recognised() {
        assert!(blames_vocabulary("Token id 29999 is out of vocabulary"));
        assert!(blames_vocabulary("token id 5 is out of VOCAB (size 3)"));
        assert!(!blames_vocabulary("HTTP 503: overloaded"));
    }
}
