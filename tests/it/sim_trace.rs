//! The simulator on real agentic traces: once the sessions' working set outgrows HBM, offload
//! `on` gives a lower TTFT than `off`, and `noprefix` is the worst of the three.
//!
//! Until the replay engine exists this test drives the server itself, simply: six sample sessions
//! from traces/samples/kv-cache-tester, their first five requests each, two turns of a session
//! at a time, round-robin: the second turn of a pair finds its context in HBM, the first has to
//! find it after the other five sessions ran. Equal hash ids become equal token blocks, so the
//! server sees the sharing the traces describe.

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use common::sim::{SimServer, sample};
use serde_json::{Value, json};

const TRACES: &[&str] = &[
    "trace_0538.json",
    "trace_0057.json",
    "trace_0460.json",
    "trace_0165.json",
    "trace_0174.json",
    "trace_0019.json",
];
const TURNS: usize = 5;
const TRACE_BLOCK: u32 = 64;

fn traces_dir() -> PathBuf {
    common::repo_root().join("traces/samples/kv-cache-tester")
}

/// Token ids for a prompt: one distinct 64-token block per (session, hash id), then
/// request-unique filler up to the trace's input length.
fn prompt(session: u32, turn: u32, request: &Value) -> Vec<u32> {
    let input = u32::try_from(request["in"].as_u64().expect("in")).expect("fits");
    let mut ids: Vec<u32> = Vec::with_capacity(input as usize);
    for h in request["hash_ids"].as_array().expect("hash_ids") {
        let h = u32::try_from(h.as_u64().expect("hash id")).expect("fits");
        let base = kvsweep::base::rng::mix((u64::from(session) << 32) | u64::from(h));
        ids.extend((0..TRACE_BLOCK).map(|j| ((base + u64::from(j)) % 190_000) as u32 + 1));
    }
    let unique = kvsweep::base::rng::mix(0xF111 ^ (u64::from(session) << 40) ^ u64::from(turn));
    let mut j = 0;
    while ids.len() < input as usize {
        ids.push(((unique + j) % 190_000) as u32 + 1);
        j += 1;
    }
    ids
}

fn sessions() -> Vec<Vec<Vec<u32>>> {
    TRACES
        .iter()
        .enumerate()
        .map(|(s, file)| {
            let text = std::fs::read_to_string(traces_dir().join(file)).unwrap_or_else(|e| {
                panic!("{file}: {e} (the sample traces are in traces/samples/kv-cache-tester)")
            });
            let trace: Value = serde_json::from_str(&text).expect("trace JSON");
            trace["requests"]
                .as_array()
                .expect("requests")
                .iter()
                .filter(|r| r["type"] != "subagent")
                .take(TURNS)
                .enumerate()
                .map(|(t, r)| prompt(s as u32, t as u32, r))
                .collect()
        })
        .collect()
}

/// Mean modelled TTFT over the interleaved sessions, and the hit share. The TTFT is the
/// engine's own (its histogram, from a request's arrival in the engine to its first token, × the
/// speed): the engine paces its steps by their modelled times, while the client's HTTP and JSON
/// work on prompts of up to 60k tokens, the same in every mode, stays out of it.
async fn replay(mode: &[&str], sessions: &[Vec<Vec<u32>>]) -> (Duration, f64) {
    const SPEED: f64 = 25.0;
    let speed = SPEED.to_string();
    let mut args = vec![
        "--model",
        "llama-3.1-70b",
        "--runner",
        "h100",
        "--tp",
        "8",
        "--kv-cache-gb",
        "10",
        "--speed",
        &speed,
    ];
    args.extend_from_slice(mode);
    let sim = SimServer::start(&args);
    let client = reqwest::Client::new();
    let (mut cached, mut prompt_tokens) = (0u64, 0u64);
    let order = (0..TURNS.div_ceil(2)).flat_map(|round| {
        sessions
            .iter()
            .flat_map(move |s| s.iter().skip(2 * round).take(2))
    });
    for p in order {
        let body: Value = client
            .post(sim.url("/v1/completions"))
            .json(&json!({"prompt": p, "max_tokens": 1}))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        cached += body["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .expect("cached");
        prompt_tokens += body["usage"]["prompt_tokens"].as_u64().expect("prompt");
    }
    let metrics = client
        .get(sim.url("/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics");
    let ttft = |part: &str| {
        sample(
            &metrics,
            &format!("vllm:time_to_first_token_seconds_{part}"),
            "",
        )
    };
    (
        Duration::from_secs_f64(ttft("sum") * SPEED / ttft("count")),
        cached as f64 / prompt_tokens as f64,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn offload_beats_hbm_only_once_the_working_set_outgrows_hbm_and_noprefix_is_worst() {
    let sessions = sessions();
    let largest: usize = sessions
        .iter()
        .map(|s| s.iter().map(Vec::len).max().unwrap_or(0))
        .sum();
    // 10 GB of KV cache holds ~30k tokens of Llama 3.1 70B: far less than the sessions' contexts.
    assert!(largest > 60_000, "working set {largest} tokens");

    let (on, on_hits) = replay(&["--offload-gb", "200"], &sessions).await;
    let (off, off_hits) = replay(&[], &sessions).await;
    let (noprefix, noprefix_hits) = replay(&["--prefix-caching", "off"], &sessions).await;
    eprintln!(
        "mean TTFT: on {on:?} ({on_hits:.2} hit), off {off:?} ({off_hits:.2}), noprefix {noprefix:?} ({noprefix_hits:.2})"
    );
    assert!(on_hits > off_hits, "the offload tier keeps what HBM evicts");
    assert_eq!(noprefix_hits, 0.0);
    assert!(on < off.mul_f64(0.9), "on {on:?} vs off {off:?}");
    assert!(
        off < noprefix.mul_f64(0.9),
        "off {off:?} vs noprefix {noprefix:?}"
    );
    assert!(on_hits > 0.7 && off_hits > 0.3, "{on_hits} {off_hits}");
}
