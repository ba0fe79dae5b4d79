//! Fast solvers against the reference ones, on generated traces and hand-checked cases.

use super::bounds::{self, Hits};
use super::naive;
use super::naive::{micro_trace as generated, request, session};
use super::stream::{self, Scope};
use crate::base::rng::mix;
use crate::data::trace::TraceSet;

fn fast(set: &TraceSet, scope: Scope, output: bool, caps: &[u64]) -> Vec<Hits> {
    let entries = stream::order(set, scope, &|_| true);
    bounds::hits(&stream::reuse(&entries, output), caps)
}

const CAPACITIES: [u64; 9] = [0, 1, 2, 3, 5, 8, 13, 40, 1000];

/// A tiny trace (block size 4) whose sessions follow one conversation for a while, so that
/// they carry each other's answers at the same positions, then fork off it; with side requests
/// and retries in between, after which a later turn carries the answer instead of the next one.
fn forking(seed: u64) -> TraceSet {
    let mut state = seed;
    let mut next = move |n: u64| {
        state = mix(state);
        state % n
    };
    let conversation: Vec<u64> = (1..=10).collect();
    let mut out = Vec::new();
    for s in 0..1 + next(3) {
        let mut ids = conversation[..1 + next(3) as usize].to_vec();
        let mut requests = Vec::new();
        let mut t = next(4) as f64;
        for _ in 0..2 + next(4) {
            let prompt = match next(6) {
                0 => vec![900 + next(3)],
                1 => ids.clone(),
                turn => {
                    for _ in 0..1 + next(2) {
                        let forked = turn == 2 || ids.len() >= conversation.len();
                        let at = ids.len();
                        ids.push(if forked || ids[at - 1] > 100 {
                            100 * (s + 2) + at as u64
                        } else {
                            conversation[at]
                        });
                    }
                    ids.clone()
                }
            };
            requests.push(request(t, &prompt, 4, next(4) as u32, next(10) as u32));
            t += 0.5 + next(2) as f64;
        }
        out.push(session(&format!("s{s}"), 7, requests));
    }
    TraceSet {
        sessions: out,
        ..TraceSet::default()
    }
}

/// Both generators' trace for `seed`.
fn generated_traces(seed: u64) -> [TraceSet; 2] {
    [generated(seed), forking(seed)]
}

#[test]
fn fast_solvers_agree_with_the_reference_ones_and_the_bounds_are_ordered() {
    for seed in 0..300 {
        for (g, set) in generated_traces(seed).iter().enumerate() {
            for scope in [Scope::Global, Scope::Session] {
                for output in [false, true] {
                    let ctx = format!("seed {seed} generator {g} {scope:?} output {output}");
                    agree_and_order(set, scope, output, &ctx);
                }
            }
        }
    }
}

fn agree_and_order(set: &TraceSet, scope: Scope, output: bool, ctx: &str) {
    let entries = stream::order(set, scope, &|_| true);
    let steps = naive::steps(&entries, output);
    let got = fast(set, scope, output, &CAPACITIES);
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

/// One session (block size 4, so one hash id a block), infinite capacity.
fn one_session(requests: Vec<crate::data::trace::TraceRequest>) -> TraceSet {
    TraceSet {
        sessions: vec![session("a", 1, requests)],
        ..TraceSet::default()
    }
}

#[test]
fn a_later_prompt_reads_an_answer_after_a_side_request() {
    // Issue #35's counterexample: [1,2] answers one block, then [1,2,3,4] (which carries the
    // answer as block 3), a side request [9], then [1,2,3,4,5]. Off: 2 + 0 + 4 = 6 hits. On:
    // the answer is block [1,2,3], so the second turn hits 3; the last turn does not extend the
    // side request before it but still carries [1,2,3,4]: 4 hits, 7 in all. Named by the
    // writer alone, [1,2,3] and [1,2,3,4] were lost to the last turn (5 hits).
    let set = one_session(vec![
        request(0.0, &[1, 2], 4, 0, 4),
        request(1.0, &[1, 2, 3, 4], 4, 0, 0),
        request(2.0, &[9], 4, 0, 0),
        request(3.0, &[1, 2, 3, 4, 5], 4, 0, 0),
    ]);
    for (output, hits) in [(true, 7), (false, 6)] {
        let h = fast(&set, Scope::Global, output, &[1000])[0];
        assert_eq!(
            (h.content, h.relaxed, h.strict_prefix, h.lru),
            (hits, hits, hits, hits),
            "output {output}"
        );
    }
}

#[test]
fn an_answer_is_named_by_the_first_later_prompt_that_extends_its_own() {
    // [1,2] answers two blocks. A retry of the same prompt and a side request carry nothing;
    // [1,2,3] is the first later prompt that extends [1,2]: it names the first answer block 3
    // and leaves the second one unnamed (nothing reads it).
    let requests = [
        request(0.0, &[1, 2], 4, 0, 8),
        request(1.0, &[1, 2], 4, 0, 0),
        request(2.0, &[7], 4, 0, 0),
        request(3.0, &[1, 2, 3], 4, 0, 0),
    ];
    let refs: Vec<_> = requests.iter().collect();
    let paths = stream::written_paths(&refs, 4);
    assert_eq!(paths[0], [1, 2, 3]);
    assert_eq!(paths[1], [1, 2]);
    // A prompt with fewer hash ids than whole blocks: where the answer starts has no path.
    let mut short = request(0.0, &[1], 4, 4, 4);
    short.hash_ids = vec![1];
    let refs = [&short, &requests[3]];
    assert_eq!(stream::written_paths(&refs, 4)[0], [1]);
}

#[test]
fn another_session_carrying_the_same_ids_reads_an_answer() {
    // Session a: [1,2] answers a block its next turn names 3. Session b then asks [1,2,3]:
    // it reads a's answer in the global scope, not in the session scope.
    let set = TraceSet {
        sessions: vec![
            session(
                "a",
                1,
                vec![
                    request(0.0, &[1, 2], 4, 0, 4),
                    request(5.0, &[1, 2, 3, 4], 4, 0, 0),
                ],
            ),
            session("b", 1, vec![request(1.0, &[1, 2, 3], 4, 0, 0)]),
        ],
        ..TraceSet::default()
    };
    // b: 3 hits; a's second turn: 3 as well ([1,2,3,4] is new).
    assert_eq!(fast(&set, Scope::Global, true, &[1000])[0].content, 6);
    assert_eq!(fast(&set, Scope::Global, false, &[1000])[0].content, 2 + 3);
    assert_eq!(fast(&set, Scope::Session, true, &[1000])[0].content, 3);
}

#[test]
fn answers_are_named_from_the_whole_session_whatever_a_bucket_keeps() {
    // The turn that names [1,2]'s answer (8 blocks) is in another bucket; the bucket's later
    // turn [1,2,3,4,5] still reads the answer block [1,2,3].
    let set = one_session(vec![
        request(0.0, &[1, 2], 4, 0, 4),
        request(1.0, &[1, 2, 3, 4, 5, 6, 7, 8], 4, 0, 0),
        request(2.0, &[1, 2, 3, 4, 5], 4, 0, 0),
    ]);
    let entries = stream::order(&set, Scope::Global, &|r| r.input_tokens < 32);
    assert_eq!(entries.len(), 2);
    let reuse = stream::reuse(&entries, true);
    assert_eq!(bounds::hits(&reuse, &[1000])[0].content, 3);
}

#[test]
fn output_kv_never_lowers_the_content_and_relaxed_bounds() {
    // Nor the strict-prefix optimum once the cache has room for the largest answer on top:
    // an answer costs room while it is generated, never a reuse.
    for seed in 0..500 {
        for (g, set) in generated_traces(seed).iter().enumerate() {
            for scope in [Scope::Global, Scope::Session] {
                let entries = stream::order(set, scope, &|_| true);
                let (on, off) = (
                    stream::reuse(&entries, true),
                    stream::reuse(&entries, false),
                );
                let answer = entries.iter().map(|e| e.output_blocks(true)).max();
                let answer = answer.unwrap_or(0) as u64;
                for c in CAPACITIES {
                    let (a, b) = (bounds::hits(&on, &[c])[0], bounds::hits(&off, &[c])[0]);
                    let ctx = format!("seed {seed} generator {g} {scope:?}: on {a:?}, off {b:?}");
                    assert!(a.content >= b.content && a.relaxed >= b.relaxed, "{ctx}");
                    let roomier = bounds::greedy(&on, c + answer, true);
                    assert!(
                        roomier >= b.strict_prefix,
                        "{ctx}: {roomier} at C + {answer}"
                    );
                }
            }
        }
    }
}

#[test]
fn an_answer_takes_room_a_small_cache_needed() {
    // a asks [1,2] twice; in between b asks [7] and answers a block nothing reads. C = 3.
    // Without output KV both of a's blocks survive b. With it, b holds 2 blocks while it runs
    // (strict-prefix keeps 1 of a's) and its answer stays in LRU, which evicts a's deepest.
    let set = TraceSet {
        sessions: vec![
            session(
                "a",
                1,
                vec![
                    request(0.0, &[1, 2], 4, 0, 0),
                    request(2.0, &[1, 2], 4, 0, 0),
                ],
            ),
            session("b", 1, vec![request(1.0, &[7], 4, 0, 4)]),
        ],
        ..TraceSet::default()
    };
    let on = fast(&set, Scope::Global, true, &[3, 4]);
    let off = fast(&set, Scope::Global, false, &[3])[0];
    assert_eq!((on[0].content, on[0].relaxed), (2, 2));
    assert_eq!((on[0].strict_prefix, on[0].lru), (1, 1));
    assert_eq!((off.strict_prefix, off.lru), (2, 2));
    // One block more, the answer's: both of a's blocks survive again.
    assert_eq!((on[1].strict_prefix, on[1].lru), (2, 2));
}
