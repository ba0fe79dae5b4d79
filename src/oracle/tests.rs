//! Fast solvers against the reference ones, on generated traces and hand-checked cases.

use super::bounds::{self, Hits};
use super::naive;
use super::naive::{micro_trace as generated, request, session};
use super::stream::{self, Scope};
use crate::trace::TraceSet;

fn fast(set: &TraceSet, scope: Scope, output: bool, caps: &[u64]) -> Vec<Hits> {
    let entries = stream::order(set, scope, &|_| true);
    bounds::hits(&stream::reuse(&entries, output), caps)
}

#[test]
fn fast_solvers_agree_with_the_reference_ones_and_the_bounds_are_ordered() {
    let caps = [0, 1, 2, 3, 5, 8, 13, 40, 1000];
    for seed in 0..300 {
        let set = generated(seed);
        for scope in [Scope::Global, Scope::Session] {
            for output in [false, true] {
                let entries = stream::order(&set, scope, &|_| true);
                let steps = naive::steps(&entries, output);
                let got = fast(&set, scope, output, &caps);
                let ctx = format!("seed {seed} {scope:?} output {output}");
                for h in &got {
                    let c = h.capacity_blocks;
                    assert_eq!(h.content, naive::content(&steps), "{ctx}");
                    assert_eq!(h.lru, naive::lru(&steps, c), "{ctx} C={c} lru");
                    assert_eq!(h.relaxed, naive::greedy(&steps, c, false), "{ctx} C={c}");
                    assert_eq!(
                        h.strict_prefix,
                        naive::greedy(&steps, c, true),
                        "{ctx} C={c}"
                    );
                    assert!(h.lru <= h.strict_prefix, "{ctx} {h:?}");
                    assert!(h.strict_prefix <= h.relaxed, "{ctx} {h:?}");
                    assert!(h.relaxed <= h.content, "{ctx} {h:?}");
                }
                for pair in got.windows(2) {
                    let (a, b) = (pair[0], pair[1]);
                    assert!(
                        a.lru <= b.lru && a.strict_prefix <= b.strict_prefix,
                        "{ctx}"
                    );
                    assert!(a.relaxed <= b.relaxed, "{ctx}");
                }
            }
        }
    }
}

#[test]
fn the_greedy_is_the_strict_prefix_optimum_on_every_small_case() {
    let mut checked = 0;
    for seed in 0..400 {
        let set = generated(seed);
        let entries = stream::order(&set, Scope::Global, &|_| true);
        let steps = naive::steps(&entries, true);
        for cap in [1, 2, 3, 4, 6, 9] {
            if let Some(best) = naive::brute_force(&steps, cap) {
                assert_eq!(
                    naive::greedy(&steps, cap, true),
                    best,
                    "seed {seed} C={cap}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 300, "only {checked} small cases");
}

/// Two sessions share a 2-block system prompt; each then grows by one block a turn.
fn two_sessions() -> TraceSet {
    TraceSet {
        sessions: vec![
            session(
                "a",
                1,
                vec![
                    request(0.0, &[1, 2, 10], 4, 0, 0),
                    request(2.0, &[1, 2, 10, 11], 4, 0, 0),
                ],
            ),
            session(
                "b",
                1,
                vec![
                    request(1.0, &[1, 2, 20], 4, 0, 0),
                    request(3.0, &[1, 2, 20, 21], 4, 0, 0),
                ],
            ),
        ],
        ..TraceSet::default()
    }
}

#[test]
fn hand_checked_bounds() {
    // Order: a0 [1,2,10], b0 [1,2,20], a1 [1,2,10,11], b1 [1,2,20,21].
    // Content: b0 hits 2, a1 hits 3, b1 hits 3 → 8.
    let set = two_sessions();
    let at = |cap| fast(&set, Scope::Global, false, &[cap])[0];
    assert_eq!(at(100).content, 8);
    assert_eq!(at(100).lru, 8);
    // C = 4: LRU after b0 holds 1, 2, 20, 10 (10 least recent): a1 hits 1, 2, 10 = 3; a1
    // touches 11 and evicts 20, so b1 hits only 1, 2 → 2 + 3 + 2 = 7.
    assert_eq!(at(4).lru, 7);
    // Running requests hold room. While a1 runs it holds 4 blocks, so nothing else survives it:
    // b1 keeps 1, 2 (re-read by a1) but not 20 → the optimum is also 7.
    assert_eq!(at(4).strict_prefix, 7);
    // Without that room the optimum keeps all: 8.
    assert_eq!(at(4).relaxed, 8);
    // C = 3: LRU after b0 holds 1, 2, 20: a1 hits 1, 2 → 2 + 2 + 2 = 6 (b1 finds 1, 2 only).
    assert_eq!(at(3).lru, 6);
    // Session scope: no sharing, each second turn hits its first 3 blocks.
    let s = fast(&set, Scope::Session, false, &[100])[0];
    assert_eq!((s.content, s.lru), (6, 6));
}

#[test]
fn output_kv_is_read_by_the_next_turn() {
    // Block size 4; the first prompt is 2 blocks + 2 tokens, the answer 7 tokens: it completes
    // blocks 2 and 3 ((8+2+7)/4 = 4 whole blocks). The next turn's 5 blocks reread 4 of them.
    let set = TraceSet {
        sessions: vec![session(
            "a",
            1,
            vec![
                request(0.0, &[1, 2], 4, 2, 7),
                request(1.0, &[1, 2, 3, 4, 5], 4, 0, 0),
            ],
        )],
        ..TraceSet::default()
    };
    assert_eq!(fast(&set, Scope::Global, true, &[100])[0].content, 4);
    assert_eq!(fast(&set, Scope::Global, false, &[100])[0].content, 2);
}
