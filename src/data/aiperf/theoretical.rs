//! The theoretical prefix-cache hit rate AIPerf reports for trace replays
//! (`theoretical_prefix_cache_hit` in `profile_export_aiperf.json`), computed the way AIPerf
//! 0.13.0 computes it.
//!
//! AIPerf's weka loader (`dataset/loader/weka_metric_prepass.py`,
//! `compute_shared_prefix_cache_metrics`) walks every request of a trace file (root and
//! subagents) in the trace's own time order over ONE seen-set of hash ids: a request's hit
//! blocks are the length of its leading run of hash ids already seen, its total blocks the
//! number of its hash ids. `metrics/theoretical_prefix_cache.py` then sums both over the
//! successful profiling requests and reports `100 × hits / total` %, with `count` = total
//! blocks and `sum` = hit blocks. The figure depends on the trace alone (an infinite cache that
//! saw the whole trace), never on what the run sent before.

use std::collections::{HashMap, HashSet};

use crate::data::trace::Session;

/// (hit blocks, total blocks) of each request, by (kvsweep session id, request index).
#[derive(Debug, Default)]
pub(crate) struct TheoreticalHits(HashMap<(String, u32), (u64, u64)>);

impl TheoreticalHits {
    /// The counts of every request of `roots` (each a trace file's session tree).
    pub fn of(roots: &[Session]) -> Self {
        let mut out = HashMap::new();
        for root in roots {
            // (absolute time, order in the tree, session id, request index, hash ids)
            let mut requests: Vec<(f64, usize, &str, u32, &[u64])> = Vec::new();
            walk(root, 0.0, &mut requests);
            requests.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let mut seen: HashSet<u64> = HashSet::new();
            for (_, _, session, index, hash_ids) in requests {
                let hits = hash_ids.iter().take_while(|h| seen.contains(h)).count() as u64;
                out.insert((session.to_owned(), index), (hits, hash_ids.len() as u64));
                seen.extend(hash_ids.iter().copied());
            }
        }
        TheoreticalHits(out)
    }

    /// The counts of request `index` of `session`, if the traces hold it.
    pub fn get(&self, session: &str, index: u32) -> Option<(u64, u64)> {
        self.0.get(&(session.to_owned(), index)).copied()
    }
}

/// Pushes `s`'s requests and its subagents', each at its time from the tree's start.
fn walk<'a>(s: &'a Session, start_s: f64, out: &mut Vec<(f64, usize, &'a str, u32, &'a [u64])>) {
    for (i, r) in s.requests.iter().enumerate() {
        let order = out.len();
        out.push((start_s + r.offset_s, order, &s.id, i as u32, &r.hash_ids));
    }
    for c in &s.children {
        walk(c, start_s + c.start_s, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::trace::TraceRequest;

    fn req(offset_s: f64, hash_ids: &[u64]) -> TraceRequest {
        TraceRequest {
            offset_s,
            input_tokens: 64 * hash_ids.len() as u32,
            output_tokens: 10,
            hash_ids: hash_ids.to_vec(),
            think_time_s: 0.0,
            api_time_s: 0.0,
        }
    }

    fn session(
        id: &str,
        start_s: f64,
        requests: Vec<TraceRequest>,
        children: Vec<Session>,
    ) -> Session {
        Session {
            id: id.into(),
            scope: 1,
            block_size: 64,
            start_s,
            end_s: None,
            requests,
            children,
        }
    }

    #[test]
    fn hits_are_the_leading_blocks_seen_earlier_in_the_trace_subagents_included() {
        // Root: [1 2] at 0 s, [1 2 3 9] at 10 s. Its subagent starts at 4 s: [1 2 5] at 4 s
        // (hits 1 2), [7] at 6 s (no hit). At 10 s, 1 2 3? 3 was never seen: hits 1 2 only.
        let agent = session(
            "t/a",
            4.0,
            vec![req(0.0, &[1, 2, 5]), req(2.0, &[7])],
            vec![],
        );
        let root = session(
            "t",
            0.0,
            vec![req(0.0, &[1, 2]), req(10.0, &[1, 2, 3, 9])],
            vec![agent],
        );
        // Another trace file has its own seen-set.
        let other = session("u", 0.0, vec![req(0.0, &[1, 2])], vec![]);
        let h = TheoreticalHits::of(&[root, other]);
        assert_eq!(h.get("t", 0), Some((0, 2)));
        assert_eq!(h.get("t/a", 0), Some((2, 3)));
        assert_eq!(h.get("t/a", 1), Some((0, 1)));
        assert_eq!(h.get("t", 1), Some((2, 4)));
        assert_eq!(h.get("u", 0), Some((0, 2)));
        assert_eq!(h.get("t", 2), None);
    }

    /// On the requests a real AIPerf 0.13.0 run profiled (carried beside its files), the same
    /// hit and total blocks as AIPerf reported.
    #[test]
    fn the_blocks_of_a_real_aiperf_runs_requests_are_aiperfs() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(
            root.join("tests/fixtures/aiperf/agentx-0.13.0/profiled_turns.json"),
        )
        .expect("profiled_turns.json");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        let traces: Vec<std::path::PathBuf> = ["0012", "0019", "0021", "0277"]
            .iter()
            .map(|n| root.join(format!("traces/samples/kv-cache-tester/trace_{n}.json")))
            .collect();
        let set = crate::data::trace::load(
            &traces,
            crate::data::trace::LoadOptions {
                format: crate::base::kinds::TraceFormat::Kvct,
                jsonl_block_size: None,
                strict: true,
            },
        )
        .expect("traces");
        let h = TheoreticalHits::of(&set.sessions);
        let (mut hits, mut total) = (0, 0);
        for turn in v["turns"].as_array().expect("turns") {
            let conversation = turn[0].as_str().expect("id");
            // AIPerf's `trace::sa:agent` is kvsweep's `trace/agent`.
            let session = conversation.replace("::sa:", "/");
            let index = turn[1].as_u64().expect("index") as u32;
            let (h, t) = h
                .get(&session, index)
                .unwrap_or_else(|| panic!("{session} {index}"));
            hits += h;
            total += t;
        }
        let aiperf = &v["theoretical_prefix_cache_hit"];
        assert_eq!(
            (hits, total),
            (
                aiperf["sum"].as_u64().unwrap(),
                aiperf["count"].as_u64().unwrap()
            )
        );
    }
}
