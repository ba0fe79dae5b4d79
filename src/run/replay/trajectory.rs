//! Where an AgentX lane starts its trace: AIPerf 0.13.0's wall-clock trajectory sampling
//! (`timing/trajectory_source.py`, `_build_timestamped_trajectory` and `_snapshot_for`), on the
//! timeline its weka loader builds (`dataset/loader/weka_trace.py`).
//!
//! - Timeline: every request start of the tree (the root's turns and its subagents', a subagent's
//!   `t` read relative to its spawn when it lies before it) with each gap between consecutive
//!   starts over the trace idle cap cut to the cap (`_IdleGapTimeWarp`).
//! - Instant: t* = `default_rng(seed).uniform(lo, hi)` over [min, max] ratio of the tree's span,
//!   the seed being sha256 of `"{seed}:{trace}:{lane}"` ([`lane_seed`]).
//! - Streams alive at t*: the root resumes at its first turn at or after t* (the turn before is
//!   primed); a subagent whose branch had started (or whose spawning parent turn was done) and
//!   that has a turn left resumes the same way; a subagent still to come is spawned later; one
//!   that finished is history. The root waits when its next turn joins a live subagent.
//! - Branches: subagents spawned after the same parent turn and joined at the same one share a
//!   branch, which starts with the earliest of them; a subagent joins at the first parent turn
//!   after it at or after its end (`_reconstruct_serial`); one no later turn reaches runs in the
//!   background.
//!
//! kvsweep's subagents do not keep their place among the parent's requests, so "the parent turn
//! before a subagent" is the last one that started at or before it: the same in time-ordered
//! kv-cache-tester files.

use sha2::{Digest, Sha256};

use crate::base::numpy_random::DefaultRng;
use crate::data::trace::Session;

/// AIPerf's tolerance when a parent turn and a subagent's end coincide.
const JOIN_EPSILON_S: f64 = 1e-6;

/// `_seed_for_trace_lane`: the first 8 bytes, big-endian, of sha256("{seed}:{trace}:{lane}").
fn lane_seed(seed: u64, trace: &str, lane: usize) -> u64 {
    let digest = Sha256::digest(format!("{seed}:{trace}:{lane}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Request-start gaps over the cap, cut to it (`_IdleGapTimeWarp`).
struct IdleWarp {
    /// (raw start, raw end, shift before, excess) of each long gap, in order.
    gaps: Vec<(f64, f64, f64, f64)>,
    cap: f64,
}

impl IdleWarp {
    fn new(mut starts: Vec<f64>, cap: Option<f64>) -> Self {
        let Some(cap) = cap else {
            return Self {
                gaps: Vec::new(),
                cap: f64::INFINITY,
            };
        };
        starts.sort_by(f64::total_cmp);
        let mut gaps = Vec::new();
        let mut shift = 0.0;
        for pair in starts.windows(2) {
            let gap = pair[1] - pair[0];
            if gap > cap {
                gaps.push((pair[0], pair[1], shift, gap - cap));
                shift += gap - cap;
            }
        }
        Self { gaps, cap }
    }

    fn map(&self, t: f64) -> f64 {
        let mut shift = 0.0;
        for &(start, end, before, excess) in &self.gaps {
            if t < start {
                return t - before;
            }
            if t < end {
                return if t - start <= self.cap {
                    t - before
                } else {
                    start - before + self.cap
                };
            }
            shift = before + excess;
        }
        t - shift
    }
}

/// A subagent's request `t` in its parent's trace time (`_subagent_request_absolute_t`).
fn absolute(child: &Session, offset_s: f64) -> f64 {
    if offset_s + JOIN_EPSILON_S < child.start_s {
        child.start_s + offset_s
    } else {
        offset_s
    }
}

/// One subagent on the tree's timeline.
struct Child {
    /// Its turns' times.
    turns: Vec<f64>,
    /// The parent turn it is spawned after, and the one that joins it (`None`: background).
    spawned_after: usize,
    joins_at: Option<usize>,
    /// Its branch's start: the earliest start of the subagents sharing its spawn and join.
    branch_start: f64,
}

/// A tree (a root session and its subagents) on AIPerf's timeline.
pub struct Timeline {
    root: Vec<f64>,
    /// By child index; `None` for a subagent with no parent turn before it (AIPerf drops it).
    children: Vec<Option<Child>>,
}

impl Timeline {
    /// The tree of `session` with gaps over `cap` seconds cut (the trace idle cap).
    pub fn new(session: &Session, cap: Option<f64>) -> Self {
        let mut starts: Vec<f64> = session.requests.iter().map(|r| r.offset_s).collect();
        for c in &session.children {
            starts.extend(c.requests.iter().map(|r| absolute(c, r.offset_s)));
        }
        let warp = IdleWarp::new(starts, cap);
        let root: Vec<f64> = session
            .requests
            .iter()
            .map(|r| warp.map(r.offset_s))
            .collect();
        let mut children: Vec<Option<Child>> = session
            .children
            .iter()
            .map(|c| {
                let spawned_after = session
                    .requests
                    .iter()
                    .rposition(|r| r.offset_s <= c.start_s)?;
                // `_sa_end_seconds`: the recorded duration, else the last request's end.
                let end = c.end_s.unwrap_or_else(|| {
                    c.requests
                        .iter()
                        .map(|r| absolute(c, r.offset_s) + r.api_time_s)
                        .fold(c.start_s, f64::max)
                });
                let end = warp.map(end);
                let joins_at =
                    (spawned_after + 1..root.len()).find(|&j| root[j] + JOIN_EPSILON_S >= end);
                Some(Child {
                    turns: c
                        .requests
                        .iter()
                        .map(|r| warp.map(absolute(c, r.offset_s)))
                        .collect(),
                    spawned_after,
                    joins_at,
                    branch_start: warp.map(c.start_s),
                })
            })
            .collect();
        // Subagents with the same spawn and join turns share a branch and its earliest start.
        let keys: Vec<Option<(usize, Option<usize>, f64)>> = children
            .iter()
            .map(|c| {
                c.as_ref()
                    .map(|c| (c.spawned_after, c.joins_at, c.branch_start))
            })
            .collect();
        for c in children.iter_mut().flatten() {
            c.branch_start = keys
                .iter()
                .flatten()
                .filter(|k| (k.0, k.1) == (c.spawned_after, c.joins_at))
                .map(|k| k.2)
                .fold(c.branch_start, f64::min);
        }
        Self { root, children }
    }

    /// The parent turn that joins each subagent (`None`: joined only at the session's end).
    pub(crate) fn join_turns(&self) -> Vec<Option<usize>> {
        self.children
            .iter()
            .map(|c| c.as_ref().and_then(|c| c.joins_at))
            .collect()
    }

    /// The earliest and latest turn time of the tree (`_trace_time_bounds`).
    fn bounds(&self) -> Option<(f64, f64)> {
        let all = self
            .root
            .iter()
            .chain(self.children.iter().flatten().flat_map(|c| c.turns.iter()));
        all.fold(None, |acc, &t| match acc {
            None => Some((t, t)),
            Some((lo, hi)) => Some((f64::min(lo, t), f64::max(hi, t))),
        })
    }

    /// The streams alive at the instant drawn for `lane` of trace `trace` (`_snapshot_for`), or
    /// `None` where AIPerf finds nothing to resume there.
    pub fn snapshot(
        &self,
        ratio: (f64, f64),
        seed: u64,
        trace: &str,
        lane: usize,
    ) -> Option<Snapshot> {
        let (start, end) = self.bounds()?;
        let lo = start + ratio.0 * (end - start);
        let hi = (start + ratio.1 * (end - start)).max(lo);
        let t_star = if hi == lo {
            lo
        } else {
            DefaultRng::new(lane_seed(seed, trace, lane)).uniform(lo, hi)
        };
        let next_at = |turns: &[f64]| turns.iter().position(|&t| t >= t_star);
        let root_next = next_at(&self.root);
        let mut children = Vec::new();
        let mut later = Vec::new();
        let mut pending_joins = Vec::new();
        for (index, c) in self.children.iter().enumerate() {
            let Some(c) = c else { continue };
            if t_star < c.branch_start {
                let spawn_done = self.root[c.spawned_after] <= t_star
                    && root_next.is_none_or(|n| n > c.spawned_after);
                if !spawn_done {
                    later.push(Stream {
                        child: Some(index),
                        next_turn: 0,
                        offset_s: c.turns.first().map_or(0.0, |t| t - t_star),
                    });
                    continue;
                }
            }
            let Some(next) = next_at(&c.turns) else {
                continue;
            };
            children.push(Stream {
                child: Some(index),
                next_turn: next,
                offset_s: c.turns[next] - t_star,
            });
            pending_joins.extend(c.joins_at);
        }
        let root = root_next.map(|n| Stream {
            child: None,
            next_turn: n,
            offset_s: self.root[n] - t_star,
        });
        let root_gated = root_next.is_some_and(|n| pending_joins.contains(&n));
        if root.is_none() && children.is_empty() {
            return None;
        }
        Some(Snapshot {
            t_star_s: t_star,
            root,
            root_gated,
            children,
            later,
        })
    }
}

/// A stream resumed at t*: it profiles from `next_turn` (the turn before it, if any, is primed)
/// `offset_s` after t*.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stream {
    /// `None` for the root, else the subagent's index among the session's children.
    pub child: Option<usize>,
    pub(crate) next_turn: usize,
    pub offset_s: f64,
}

impl Stream {
    /// The turn primed before timing: the stream's last one before t*.
    pub(crate) fn primed_turn(&self) -> Option<usize> {
        self.next_turn.checked_sub(1)
    }
}

/// A lane's state at its sampled instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// t* on the tree's (idle-capped) timeline, seconds from the trace's start.
    pub t_star_s: f64,
    /// The root's resume point; `None` when all its turns were before t*.
    pub root: Option<Stream>,
    /// The root's next turn joins a live subagent: it waits for it.
    root_gated: bool,
    /// Subagents live at t*.
    pub children: Vec<Stream>,
    /// Subagents spawned after t*, from their first turn.
    pub later: Vec<Stream>,
}

/// Where a lane's first play resumes after the AgentX warm-up.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Resume {
    /// The root's first profiled turn (its turn count when it has none left).
    pub(crate) root_from: usize,
    /// Seconds after the lane's profiling start that the root sends it.
    pub(crate) root_delay_s: f64,
    /// The subagents to run: (child index, first turn, seconds after the lane's profiling
    /// start); the others are history.
    pub children: Vec<(usize, usize, f64)>,
}

impl Snapshot {
    /// The resume of this snapshot, its root profiling from `root_from` (after any extra warm-up
    /// turns) and every stream capped at `cap` seconds of delay.
    pub fn resume(&self, root_from: usize, cap: f64) -> Resume {
        Resume {
            root_from,
            root_delay_s: self
                .root
                .as_ref()
                .map_or(0.0, |r| self.burst_delay_s(r).min(cap)),
            children: self
                .children
                .iter()
                .chain(&self.later)
                .filter_map(|s| Some((s.child?, s.next_turn, self.burst_delay_s(s).min(cap))))
                .collect(),
        }
    }

    /// Seconds after the lane's profiling start that `stream` sends its first turn, under
    /// `--burst-phase-starts`: the lane's earliest dispatchable stream at once, the others at
    /// their recorded spacing from it.
    fn burst_delay_s(&self, stream: &Stream) -> f64 {
        let earliest = self
            .children
            .iter()
            .chain(self.root.iter().filter(|_| !self.root_gated))
            .map(|s| s.offset_s)
            .fold(f64::INFINITY, f64::min);
        (stream.offset_s - earliest).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::trace::TraceRequest;

    fn request(t: f64) -> TraceRequest {
        TraceRequest {
            offset_s: t,
            input_tokens: 100,
            output_tokens: 10,
            hash_ids: vec![1],
            think_time_s: 0.0,
            api_time_s: 1.0,
        }
    }

    fn session(times: &[f64], children: Vec<Session>) -> Session {
        Session {
            id: "t".into(),
            scope: 1,
            block_size: 64,
            start_s: 0.0,
            end_s: None,
            requests: times.iter().map(|&t| request(t)).collect(),
            children,
        }
    }

    fn child(start: f64, times: &[f64], end: f64) -> Session {
        Session {
            start_s: start,
            end_s: Some(end),
            ..session(times, Vec::new())
        }
    }

    #[test]
    fn the_lane_seed_is_sha256_of_seed_trace_and_lane() {
        // Printed by scripts/numpy-pcg64-reference.py.
        assert_eq!(lane_seed(42, "trace_0012", 0), 471_509_553_059_106_708);
        assert_eq!(lane_seed(42, "trace_0277", 3), 15_561_901_713_069_592_733);
    }

    #[test]
    fn long_gaps_are_cut_to_the_cap() {
        let w = IdleWarp::new(vec![0.0, 10.0, 500.0, 510.0], Some(100.0));
        assert_eq!(w.map(10.0), 10.0);
        assert_eq!(w.map(50.0), 50.0, "within the cap after the gap's start");
        assert_eq!(w.map(300.0), 110.0, "past the cap: the cap's end");
        assert_eq!(w.map(510.0), 120.0, "after the gap: shifted by its excess");
    }

    #[test]
    fn the_root_resumes_at_its_first_turn_after_t_star() {
        let s = session(&[0.0, 10.0, 20.0, 30.0, 40.0], Vec::new());
        let tl = Timeline::new(&s, None);
        let snap = tl.snapshot((0.5, 0.5), 42, "t", 0).expect("a snapshot");
        assert_eq!(snap.t_star_s, 20.0);
        let root = snap.root.expect("root");
        assert_eq!((root.next_turn, root.primed_turn()), (2, Some(1)));
        for lane in 0..50 {
            let snap = tl.snapshot((0.25, 0.75), 7, "t", lane).expect("a snapshot");
            assert!((10.0..=30.0).contains(&snap.t_star_s));
            assert_eq!(
                snap.root.expect("root").next_turn,
                (snap.t_star_s / 10.0).ceil() as usize
            );
        }
    }

    #[test]
    fn live_subagents_resume_and_gate_their_join_turn() {
        // The parent's turn 1 (t 50) is after the subagent's end (45): it joins it.
        let s = session(
            &[0.0, 50.0, 60.0],
            vec![child(5.0, &[5.0, 15.0, 25.0], 45.0)],
        );
        let tl = Timeline::new(&s, None);
        assert_eq!(tl.join_turns(), vec![Some(1)]);
        let snap = tl.snapshot((0.2, 0.2), 1, "t", 0).expect("a snapshot");
        assert_eq!(snap.t_star_s, 12.0);
        assert_eq!(
            snap.children,
            vec![Stream {
                child: Some(0),
                next_turn: 1,
                offset_s: 3.0
            }]
        );
        assert!(snap.root_gated, "turn 1 waits for the subagent");
        assert_eq!(snap.burst_delay_s(&snap.children[0]), 0.0);
        // Before the subagent's spawn it comes later; after its last turn it is history.
        let early = tl.snapshot((0.0, 0.0), 1, "t", 0).expect("a snapshot");
        assert!(early.children.is_empty());
        assert_eq!(early.later.len(), 1);
        assert_eq!(early.later[0].offset_s, 5.0, "its first turn, 5 s after t*");
        let late = tl.snapshot((0.9, 0.9), 1, "t", 0).expect("a snapshot");
        assert!(late.children.is_empty() && late.later.is_empty());
    }

    #[test]
    fn a_subagent_no_later_turn_reaches_runs_in_the_background() {
        let s = session(&[0.0, 10.0], vec![child(5.0, &[0.0, 30.0], 100.0)]);
        assert_eq!(Timeline::new(&s, None).join_turns(), vec![None]);
    }

    /// The carried traces of the side-by-side test, 4 lanes, the scenario's ratios and trace idle
    /// cap. AIPerf 0.13.0 logged (`TrajectorySource: built 4 trajectories`, run offline:
    /// `aiperf profile --scenario inferencex-agentx-mvp ... --random-seed S`) for seed 42
    /// `sample_time` 42 %, 67 %, 39 %, 66 %, `root_next` 8/14, 16/24, 9/14, 7/9 and trace_0277
    /// with 2 live streams (its root and agent_004, spawned by turn 6 before t*); for seed 1220
    /// 39 %, 35 %, 54 %, 30 %, 7/14, 8/24, 10/14, 4/9 and 3 live streams (agent_002, agent_003).
    #[test]
    fn the_carried_traces_start_where_aiperf_starts_them() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("traces/samples/kv-cache-tester");
        let paths: Vec<_> = ["0012", "0019", "0021", "0277"]
            .iter()
            .map(|n| dir.join(format!("trace_{n}.json")))
            .collect();
        let set = crate::data::trace::load(
            &paths,
            crate::data::trace::LoadOptions {
                format: crate::base::kinds::TraceFormat::Kvct,
                jsonl_block_size: None,
                strict: true,
            },
        )
        .expect("the carried traces load");
        let starts = |seed: u64| -> Vec<(u32, usize, Vec<usize>)> {
            set.sessions
                .iter()
                .enumerate()
                .map(|(lane, s)| {
                    let tl = Timeline::new(s, Some(300.0));
                    let (lo, hi) = tl.bounds().expect("timestamps");
                    let snap = tl
                        .snapshot((0.25, 0.75), seed, &s.id, lane)
                        .expect("a snapshot");
                    let pct = ((snap.t_star_s - lo) / (hi - lo) * 100.0).round() as u32;
                    let root = snap.root.as_ref().expect("a root").next_turn;
                    (
                        pct,
                        root,
                        snap.children.iter().filter_map(|c| c.child).collect(),
                    )
                })
                .collect()
        };
        let ids: Vec<&str> = set.sessions.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            ["trace_0012", "trace_0019", "trace_0021", "trace_0277"]
        );
        assert_eq!(
            starts(42),
            [
                (42, 8, vec![]),
                (67, 16, vec![]),
                (39, 9, vec![]),
                (66, 7, vec![3])
            ]
        );
        assert_eq!(
            starts(1220),
            [
                (39, 7, vec![]),
                (35, 8, vec![]),
                (54, 10, vec![]),
                (30, 4, vec![1, 2])
            ]
        );
    }
}
