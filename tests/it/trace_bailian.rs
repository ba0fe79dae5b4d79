//! Qwen-Bailian JSONL traces end to end, on files written here: detection, conversations built
//! from `parent_chat_id` chains, 16-token blocks, and `trace analyze`, `trace convert`, `oracle`
//! and `replay` (against `kvsweep sim-server`) reading them.

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::sim::SimServer;
use common::{csv_rows, kvsweep, kvsweep_err, kvsweep_ok, run, write};
use kvsweep::data::trace::{LoadOptions, Session, TraceSet};
use serde_json::Value;

/// Two conversations. Chat 1 (at 0 s) is answered by 2 (3 s), then 3 (7 s); 4 (5 s) is a second
/// answer to 1, a branch. Chat 10 (1 s) is followed by 11 (3 s). Ids name 16-token blocks; the
/// last one of a prompt is partly filled, as in the dataset.
const CHATS: &str = concat!(
    r#"{"chat_id": 1, "parent_chat_id": -1, "timestamp": 0.0, "input_length": 20, "output_length": 4, "type": "text", "turn": 1, "hash_ids": [1, 2]}"#,
    "\n",
    r#"{"chat_id": 10, "parent_chat_id": -1, "timestamp": 1.0, "input_length": 33, "output_length": 4, "type": "search", "turn": 1, "hash_ids": [50, 51, 52]}"#,
    "\n",
    r#"{"chat_id": 2, "parent_chat_id": 1, "timestamp": 3.0, "input_length": 40, "output_length": 4, "type": "text", "turn": 2, "hash_ids": [1, 2, 3]}"#,
    "\n",
    r#"{"chat_id": 11, "parent_chat_id": 10, "timestamp": 3.0, "input_length": 50, "output_length": 4, "type": "search", "turn": 2, "hash_ids": [50, 51, 52, 53]}"#,
    "\n",
    r#"{"chat_id": 4, "parent_chat_id": 1, "timestamp": 5.0, "input_length": 36, "output_length": 4, "type": "text", "turn": 2, "hash_ids": [1, 2, 6]}"#,
    "\n",
    r#"{"chat_id": 3, "parent_chat_id": 2, "timestamp": 7.0, "input_length": 70, "output_length": 4, "type": "text", "turn": 3, "hash_ids": [1, 2, 3, 4, 5]}"#,
    "\n",
);

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

fn chats(dir: &Path) -> PathBuf {
    write(dir, "chats.jsonl", CHATS)
}

fn load(path: &Path, jsonl_block_size: Option<u32>) -> TraceSet {
    kvsweep::data::trace::load(
        &[path.to_path_buf()],
        LoadOptions {
            format: kvsweep::plan::spec::TraceFormat::Auto,
            jsonl_block_size,
            strict: true,
        },
    )
    .expect("the trace loads")
}

/// (offset, think time, input tokens) of each request.
fn timeline(session: &Session) -> Vec<(f64, f64, u32)> {
    session
        .requests
        .iter()
        .map(|r| (r.offset_s, r.think_time_s, r.input_tokens))
        .collect()
}

#[test]
fn chains_become_conversations_with_their_branches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let set = load(&chats(dir.path()), None);
    let ids: Vec<&str> = set.sessions.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["chats#1", "chats#10"], "one session per conversation");
    let (first, second) = (&set.sessions[0], &set.sessions[1]);
    assert_eq!((first.start_s, second.start_s), (0.0, 1.0), "seconds");
    assert_eq!(
        timeline(first),
        [(0.0, 0.0, 20), (3.0, 3.0, 40), (7.0, 4.0, 70)]
    );
    assert_eq!(timeline(second), [(0.0, 0.0, 33), (2.0, 2.0, 50)]);
    let branch = &first.children[..];
    assert_eq!(branch.len(), 1);
    assert_eq!(
        (branch[0].id.as_str(), branch[0].start_s),
        ("chats#1/4", 5.0)
    );
    assert_eq!(timeline(&branch[0]), [(0.0, 5.0, 36)]);
    assert_eq!(branch[0].requests[0].hash_ids, [1, 2, 6]);
    assert!(
        set.sessions
            .iter()
            .chain(branch)
            .all(|s| s.block_size == 16 && s.scope == first.scope),
        "16-token blocks, one hash scope for the file"
    );
    assert_eq!(
        load(&chats(dir.path()), Some(64)).sessions[0].block_size,
        64
    );
}

#[test]
fn a_jsonl_without_chat_ids_stays_mooncake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = write(
        dir.path(),
        "m.jsonl",
        concat!(
            r#"{"timestamp": 1000, "input_length": 600, "output_length": 4, "hash_ids": [1, 2]}"#,
            "\n",
            r#"{"timestamp": 3000, "input_length": 700, "output_length": 4, "hash_ids": [1, 2]}"#,
            "\n",
        ),
    );
    let set = load(&m, None);
    let starts: Vec<(f64, u32)> = set
        .sessions
        .iter()
        .map(|s| (s.start_s, s.block_size))
        .collect();
    assert_eq!(starts, [(1.0, 512), (3.0, 512)], "milliseconds, 512 tokens");
}

#[test]
fn analyze_reads_conversations_in_16_token_blocks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = chats(dir.path());
    let v: Value = serde_json::from_str(&kvsweep_ok(&["trace", "analyze", s(&trace), "--json"]))
        .expect("json");
    let set = &v["set"];
    assert_eq!(
        (&set["sessions"], &set["subagents"], &set["requests"]),
        (&Value::from(2), &Value::from(1), &Value::from(6))
    );
    assert_eq!(set["reuse"]["block_size"], 16);
    assert_eq!(set["think_time_s"]["max"], 5.0, "chat 4, 5 s after chat 1");
    assert_eq!(v["warnings"], Value::Array(Vec::new()));
    let v: Value = serde_json::from_str(&kvsweep_ok(&[
        "trace",
        "analyze",
        s(&trace),
        "--json",
        "--block-size",
        "32",
    ]))
    .expect("json");
    assert_eq!(
        v["set"]["reuse"]["block_size"], 32,
        "--block-size still wins"
    );
}

#[test]
fn convert_writes_the_conversations_as_mooncake_and_kv_cache_tester() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = chats(dir.path());
    let mooncake = dir.path().join("m.jsonl");
    kvsweep_ok(&[
        "trace",
        "convert",
        s(&trace),
        "--to",
        "mooncake",
        "--block-size",
        "16",
        "--out",
        s(&mooncake),
    ]);
    let lines: Vec<Value> = std::fs::read_to_string(&mooncake)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let rows: Vec<(&str, u64, u64)> = lines
        .iter()
        .map(|l| {
            (
                l["session_id"].as_str().expect("session_id"),
                l["timestamp"].as_u64().expect("ms"),
                l["delay"].as_u64().expect("ms"),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("chats#1", 0, 0),
            ("chats#10", 1000, 0),
            ("chats#1", 3000, 3000),
            ("chats#10", 3000, 2000),
            ("chats#1/4", 5000, 5000),
            ("chats#1", 7000, 4000),
        ]
    );
    // Re-blocked at the same size, the turns of chat 1 still share their first blocks.
    let ids = |i: usize| lines[i]["hash_ids"].as_array().expect("ids").clone();
    assert_eq!(ids(2)[..1], ids(0)[..1]);
    assert_eq!(ids(5)[..2], ids(2)[..2]);

    let kvct = dir.path().join("kvct");
    kvsweep_ok(&[
        "trace",
        "convert",
        s(&trace),
        "--to",
        "kvct",
        "--out",
        s(&kvct),
    ]);
    let back = kvsweep::data::trace::load(
        &[kvct],
        LoadOptions {
            format: kvsweep::plan::spec::TraceFormat::Auto,
            jsonl_block_size: None,
            strict: true,
        },
    )
    .expect("converted traces load");
    let shape: Vec<(usize, usize, u32)> = back
        .sessions
        .iter()
        .map(|s| (s.requests.len(), s.children.len(), s.block_size))
        .collect();
    assert_eq!(shape, [(3, 1, 64), (2, 0, 64)], "the branch is a subagent");
}

#[test]
fn oracle_counts_hits_in_16_token_blocks() {
    // Whole blocks only, first come first cached: chat 11 reuses [50, 51] (32 tokens), chat 2
    // reuses [1] (16; chat 1's block 2 is partial), chat 4 and chat 3 reuse [1, 2] (32 each):
    // 112 of 249 input tokens. In 512-token blocks nothing would be reused.
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = chats(dir.path());
    let out = dir.path().join("o");
    kvsweep_ok(&[
        "oracle",
        s(&trace),
        "--out",
        s(&out),
        "--kv-bytes-per-token",
        "1024",
        "--kv-gb-per-card",
        "1",
        "--runner",
        "h200",
        "--gpus",
        "1",
        "--no-output-kv",
        "--tiers",
        "",
    ]);
    let hit = &csv_rows(&out.join("hit_summary.csv"))[0];
    let content: f64 = hit["Content Upper Bound"].parse().expect("a number");
    assert!((content - 112.0 / 249.0).abs() < 1e-6, "{hit:?}");
}

/// requests.csv rows by (session, request index).
fn rows_by_request(out: &Path) -> HashMap<(String, usize), HashMap<String, String>> {
    csv_rows(&out.join("requests.csv"))
        .into_iter()
        .map(|r| {
            let index = r["request_index"].parse().expect("index");
            ((r["session"].clone(), index), r)
        })
        .collect()
}

#[test]
fn replay_sends_every_turn_after_its_parent_in_16_token_blocks() {
    let sim = SimServer::start(&[
        "--instant",
        "--kv-cache-gb",
        "100000",
        "--model",
        "llama-3.1-8b",
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = chats(dir.path());
    let out = dir.path().join("r");
    let done = run(kvsweep().args([
        "replay",
        "--url",
        &sim.base,
        "--traces",
        s(&trace),
        "--users",
        "2",
        "--time-scale",
        "0.1",
        "--engine-label",
        "sim",
        "--out",
        s(&out),
    ]));
    assert!(done.status.success(), "{}", common::stderr(&done));
    let rows = rows_by_request(&out);
    let mut sent: Vec<(&str, usize, &str)> = rows
        .iter()
        .map(|((session, i), r)| (session.as_str(), *i, r["prompt_tokens"].as_str()))
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        [
            ("chats#1", 0, "20"),
            ("chats#1", 1, "40"),
            ("chats#1", 2, "70"),
            ("chats#1/4", 0, "36"),
            ("chats#10", 0, "33"),
            ("chats#10", 1, "50"),
        ]
    );
    assert!(rows.values().all(|r| r["status"] == "ok"), "{rows:?}");
    // Chat 11 follows chat 10's answer after its 2 s think time (× 0.1), and finds chat 10's two
    // whole 16-token blocks cached.
    let (ten, eleven) = (
        &rows[&("chats#10".to_owned(), 0)],
        &rows[&("chats#10".to_owned(), 1)],
    );
    let at = |r: &HashMap<String, String>, key: &str| -> f64 { r[key].parse().expect("seconds") };
    let gap = at(eleven, "sent_s") - at(ten, "done_s");
    // Never before the think time; well short of the unscaled 2 s (sent_s and done_s are
    // rounded to the millisecond).
    assert!((0.199..2.0).contains(&gap), "gap {gap} vs think time 0.2");
    assert_eq!(eleven["cached_tokens"], "32");
}

#[test]
fn orphans_are_warned_about_and_bad_records_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let orphan = write(
        dir.path(),
        "orphan.jsonl",
        concat!(
            r#"{"chat_id": 5, "parent_chat_id": 4, "timestamp": 0.5, "input_length": 16, "output_length": 1}"#,
            "\n",
            r#"{"chat_id": 6, "parent_chat_id": 5, "timestamp": 1.5, "input_length": 16, "output_length": 1}"#,
            "\n",
        ),
    );
    let out = run(kvsweep().args(["trace", "analyze", s(&orphan)]));
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(
        common::stderr(&out).contains(
            "orphan.jsonl:1: field `parent_chat_id`: 1 record(s) name a parent that is not in the file (this one names 4)"
        ),
        "{}",
        common::stderr(&out)
    );

    let bad = write(
        dir.path(),
        "bad.jsonl",
        concat!(
            r#"{"chat_id": 1, "parent_chat_id": -1, "timestamp": 0, "input_length": 16, "output_length": 1}"#,
            "\n",
            r#"{"chat_id": 2, "parent_chat_id": 1, "timestamp": 1, "input_length": 16, "output_length": 1, "turn": -2}"#,
            "\n",
        ),
    );
    let v: Value =
        serde_json::from_str(&kvsweep_ok(&["trace", "analyze", s(&bad), "--json"])).expect("json");
    let skipped = v["skipped_records"][0]
        .as_str()
        .expect("one skipped record");
    assert!(skipped.contains("bad.jsonl:2: field `turn`"), "{skipped}");
    let err = kvsweep_err(&[
        "replay",
        "--url",
        "http://127.0.0.1:9",
        "--traces",
        s(&bad),
        "--strict",
        "--out",
        s(&dir.path().join("r")),
    ]);
    assert!(err.contains("bad.jsonl:2: field `turn`"), "{err}");

    let twice = write(
        dir.path(),
        "twice.jsonl",
        concat!(
            r#"{"chat_id": 1, "parent_chat_id": -1, "timestamp": 0, "input_length": 16, "output_length": 1}"#,
            "\n",
            r#"{"chat_id": 1, "parent_chat_id": -1, "timestamp": 1, "input_length": 16, "output_length": 1}"#,
            "\n",
        ),
    );
    let err = kvsweep_err(&["trace", "analyze", s(&twice)]);
    assert!(
        err.contains("twice.jsonl:2: field `chat_id`: chat 1 is already line 1"),
        "{err}"
    );

    let looped = write(
        dir.path(),
        "loop.jsonl",
        concat!(
            r#"{"chat_id": 1, "parent_chat_id": 2, "timestamp": 0, "input_length": 16, "output_length": 1}"#,
            "\n",
            r#"{"chat_id": 2, "parent_chat_id": 1, "timestamp": 1, "input_length": 16, "output_length": 1}"#,
            "\n",
        ),
    );
    let err = kvsweep_err(&["oracle", s(&looped), "--out", s(&dir.path().join("o"))]);
    assert!(
        err.contains(
            "loop.jsonl:1: field `parent_chat_id`: chat 1's parents loop back to it (1 → 2 → 1)"
        ),
        "{err}"
    );
}
