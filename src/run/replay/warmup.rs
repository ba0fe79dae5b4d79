//! The warm-up: part of each starting session's first prompt sent once before timing, so that
//! a run can start with those prefixes cached (`--warm-prefix-pct`).
//!
//! kvsweep warms each starting session's own prefix, a share of the first prompt it sends (after
//! `--max-context`). kv-cache-tester's flag of the same name (also a share, 0 to 1) warms one
//! canonical prefix, a share of the largest tool + system prompt, that every conversation shares;
//! kvsweep's traces carry no such shared prefix, only hash ids, so it warms what each session
//! will read.

use std::sync::Arc;
use std::time::Duration;

use crate::base::rng::mix;
use crate::data::trace::Session;
use crate::data::trace::prompt::{PromptBuilder, PromptState};

use super::timing::{as_sent, endpoint_index, pass_scope};
use crate::base::workload::replay::ReplayArgs;
use crate::run::openai::client::{self, Outcome, PromptBody, PromptEncoding};
use crate::run::openai::preflight::{Endpoint, Preflight};

/// Sends the first `--warm-prefix-pct` of the first prompt that each session the first `users`
/// users will take sends (after `--max-context`), once, before timing: the run then starts with
/// those prefixes cached. Returns how many warm-up requests were sent.
#[allow(clippy::too_many_arguments)]
pub(super) async fn warm_up(
    client: &reqwest::Client,
    args: &ReplayArgs,
    endpoints: &[Endpoint],
    sessions: &[Session],
    builder: &PromptBuilder,
    encoding: &PromptEncoding,
    pre: &Preflight,
    users: u32,
) -> u64 {
    let share = args.control.warm_prefix_pct;
    if share <= 0.0 {
        return 0;
    }
    let mut sent = 0;
    for session in sessions.iter().take(users as usize) {
        // The first prompt the session sends: with `--on-long skip`, the first within the limit.
        let Some((first_input, first_ids)) = session
            .requests
            .iter()
            .find_map(|r| as_sent(args, r, session.block_size))
        else {
            continue;
        };
        let (input, blocks) = warm_prefix(first_input, session.block_size, share);
        let hash_ids = &first_ids[..first_ids.len().min(blocks)];
        let scope = pass_scope(session.scope, 0);
        let mut state = PromptState::default();
        builder.build(
            &mut state,
            scope,
            session.block_size,
            hash_ids,
            input,
            pre.template_tokens,
            mix(scope ^ 0x5741_524D),
        );
        let body = PromptBody::new(
            &pre.model,
            Arc::new(state.tokens().to_vec()),
            encoding.clone(),
            1,
            false,
        );
        let endpoint = &endpoints[endpoint_index(scope, endpoints.len())];
        let m = client::send(
            client,
            &endpoint.url,
            &session.id,
            body,
            Duration::from_secs_f64(args.request_timeout.max(1.0)),
            || {},
        )
        .await;
        if m.outcome() == Outcome::Ok {
            sent += 1;
        }
    }
    sent
}

/// The warm-up prompt's length for a first prompt of `input` tokens as sent (at least one, at
/// most `input`, so never over `--max-context`) and the whole hash blocks it covers.
fn warm_prefix(input: u32, block_size: u32, share: f64) -> (u32, usize) {
    let tokens = ((f64::from(input) * share) as u32).clamp(1, input.max(1));
    (tokens, (tokens / block_size.max(1)) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warm_prefix_is_the_fraction_in_whole_blocks() {
        assert_eq!(warm_prefix(1000, 16, 0.5), (500, 31));
        assert_eq!(warm_prefix(1000, 512, 1.0), (1000, 1));
        assert_eq!(warm_prefix(100, 512, 0.5), (50, 0), "shorter than a block");
    }

    #[test]
    fn the_warm_prefix_is_never_longer_than_the_prompt() {
        assert_eq!(warm_prefix(1000, 16, 1.0), (1000, 62));
        assert_eq!(
            warm_prefix(1000, 16, 1.5),
            (1000, 62),
            "even past a share of 1"
        );
    }

    #[test]
    fn the_warm_prefix_is_never_empty_nor_divides_by_zero() {
        assert_eq!(warm_prefix(1, 16, 0.01), (1, 0));
        assert_eq!(
            warm_prefix(64, 0, 0.5),
            (32, 32),
            "a zero block size counts tokens"
        );
    }
}
