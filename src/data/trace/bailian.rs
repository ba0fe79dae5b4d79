//! Qwen-Bailian JSON Lines: Alibaba's anonymized usage traces of Qwen models served on Bailian
//! (github.com/alibaba-edu/qwen-bailian-usagetraces-anon, Apache-2.0), such as
//! `qwen_traceA_blksz_16.jsonl`, the example input of kvcache-upper-bound.
//!
//! One request per line: `chat_id`, `parent_chat_id`, `timestamp`, `input_length`,
//! `output_length`, `type`, `turn` and `hash_ids`. The meanings are the dataset README's:
//! `timestamp` is seconds since the start of the file (Mooncake's is milliseconds);
//! `parent_chat_id` is the `chat_id` of the turn this one follows, -1 for a conversation's first;
//! `hash_ids` name 16-token blocks (the block size here unless `--block-size` says otherwise) and
//! are global, as in Mooncake: equal ids are equal content anywhere in the file.
//!
//! How records become sessions:
//! - A record whose `parent_chat_id` is negative, null or absent starts a session
//!   (`file#chat_id`) at its `timestamp`. So does a record whose parent is not in the file (its
//!   conversation began before the trace did); the file gets one warning saying how many did.
//! - A child is sent after its parent's answer. Its think time is the trace's spacing, its
//!   timestamp minus its parent's: the file records arrivals only, so the parent's original
//!   answer time is inside that gap and cannot be taken out. `--timing think-only` (the gap after
//!   the replayed answer) therefore waits longer than the user did, by that answer time;
//!   `--timing original` keeps the trace's spacing whenever the server answers in time. A child
//!   stamped before its parent counts as sent right after it.
//! - A branch (two or more children of one record, as when an answer is regenerated): every child
//!   continues its parent's context, which its hash ids carry wherever it is replayed. The
//!   earliest child (then the first in the file) continues the session; each later one starts a
//!   child session of the conversation (`file#root/chat_id`) and follows its own earliest
//!   children. Like a kv-cache-tester subagent, a replay starts it at its own time after the
//!   conversation's start, not on its parent's answer. Branches of branches are children of the
//!   conversation too, so each record is replayed once.
//! - `type` (text, search, image, file) and `turn` have no place in a [`TraceRequest`]: they are
//!   checked (a string; a whole number) and otherwise ignored. The chain orders turns, not `turn`.
//! - A malformed record is skipped, naming file, line and field (an error with `--strict`). A
//!   `chat_id` that occurs twice, or parents that loop, make the file an error: its conversations
//!   would not be defined.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Result, bail};
use serde::Deserialize;

use super::{Session, Skipped, TraceRequest, TraceSet, parse_json};

/// Tokens per hash id: the dataset's blocks (its README; its file names say `blksz_16`).
pub(super) const BLOCK_SIZE: u32 = 16;

#[derive(Deserialize)]
struct Line {
    chat_id: u64,
    parent_chat_id: Option<i64>,
    timestamp: f64,
    input_length: u32,
    output_length: u32,
    #[serde(default)]
    hash_ids: Vec<u64>,
    /// Checked, not kept (see the module documentation).
    #[serde(rename = "type")]
    _kind: Option<String>,
    /// Checked, not kept.
    #[serde(rename = "turn")]
    _turn: Option<u32>,
}

/// A well-formed record.
struct Record {
    /// 1-based line in the file.
    line: usize,
    chat_id: u64,
    /// `None` for a conversation's first turn.
    parent: Option<u64>,
    at_s: f64,
    input_tokens: u32,
    output_tokens: u32,
    hash_ids: Vec<u64>,
}

/// Who follows whom, by index into the records.
struct Links {
    /// Each record's children, earliest first (then in file order).
    children: Vec<Vec<usize>>,
    /// Records that start a session, in file order: conversations' first turns and orphans.
    roots: Vec<usize>,
    /// Records whose parent is not in the file.
    orphans: Vec<usize>,
}

pub(super) fn parse(
    file: &Path,
    text: &str,
    scope: u64,
    block_size: u32,
    set: &mut TraceSet,
) -> Result<()> {
    let skipped_before = set.skipped.len();
    let mut records = read(file, text, set);
    let links = link(file, &records)?;
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut conversations = Conversations {
        stem: &stem,
        scope,
        block_size,
        seen: vec![false; records.len()],
        records: &mut records,
        children: &links.children,
    };
    let sessions: Vec<Session> = links
        .roots
        .iter()
        .map(|&root| conversations.session(root))
        .collect();
    let seen = conversations.seen;
    if let Some(unseen) = seen.iter().position(|s| !s) {
        bail!("{}", parent_loop(file, &records, unseen));
    }
    if let Some(&first) = links.orphans.first() {
        let r = &records[first];
        set.warnings.push(format!(
            "{}:{}: field `parent_chat_id`: {} record(s) name a parent that is not in the file \
             (this one names {}); each starts a session of its own",
            file.display(),
            r.line,
            links.orphans.len(),
            r.parent.unwrap_or_default(),
        ));
    }
    if sessions.is_empty() && set.skipped.len() == skipped_before {
        set.skipped.push(Skipped {
            file: file.to_path_buf(),
            line: 0,
            field: String::new(),
            reason: "no requests in the file".into(),
        });
    }
    set.sessions.extend(sessions);
    Ok(())
}

/// The well-formed records of `text`; the others go to `set.skipped`.
fn read(file: &Path, text: &str, set: &mut TraceSet) -> Vec<Record> {
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut skip = |field: &str, reason: String| {
            set.skipped.push(Skipped {
                file: file.to_path_buf(),
                line: i + 1,
                field: field.into(),
                reason,
            });
        };
        let l: Line = match parse_json(line) {
            Ok(l) => l,
            Err((field, e)) => {
                skip(&field, format!("malformed record: {e}"));
                continue;
            }
        };
        if l.input_length == 0 {
            skip(
                "input_length",
                "a request needs at least one input token".into(),
            );
            continue;
        }
        if !(l.timestamp.is_finite() && l.timestamp >= 0.0) {
            skip(
                "timestamp",
                format!("{} is not seconds since the trace's start", l.timestamp),
            );
            continue;
        }
        records.push(Record {
            line: i + 1,
            chat_id: l.chat_id,
            parent: l.parent_chat_id.and_then(|p| u64::try_from(p).ok()),
            at_s: l.timestamp,
            input_tokens: l.input_length,
            output_tokens: l.output_length,
            hash_ids: l.hash_ids,
        });
    }
    records
}

/// Finds each record's parent; a `chat_id` seen twice is an error.
fn link(file: &Path, records: &[Record]) -> Result<Links> {
    let mut index: HashMap<u64, usize> = HashMap::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        if let Some(&first) = index.get(&r.chat_id) {
            bail!(
                "{}:{}: field `chat_id`: chat {} is already line {}",
                file.display(),
                r.line,
                r.chat_id,
                records[first].line
            );
        }
        index.insert(r.chat_id, i);
    }
    let mut links = Links {
        children: vec![Vec::new(); records.len()],
        roots: Vec::new(),
        orphans: Vec::new(),
    };
    for (i, r) in records.iter().enumerate() {
        match r.parent.map(|p| index.get(&p)) {
            None => links.roots.push(i),
            Some(Some(&parent)) => links.children[parent].push(i),
            Some(None) => {
                links.roots.push(i);
                links.orphans.push(i);
            }
        }
    }
    for kids in &mut links.children {
        kids.sort_by(|a, b| records[*a].at_s.total_cmp(&records[*b].at_s));
    }
    Ok(links)
}

/// Turns conversations' records into sessions.
struct Conversations<'a> {
    /// The file's name without extension, which session ids start with.
    stem: &'a str,
    scope: u64,
    block_size: u32,
    records: &'a mut [Record],
    children: &'a [Vec<usize>],
    /// Records already in a session.
    seen: Vec<bool>,
}

impl Conversations<'_> {
    /// The session that starts at `root`: its earliest-child line, with every branch off it (and
    /// off those) as a child session.
    fn session(&mut self, root: usize) -> Session {
        let (root_chat, start_s) = (self.records[root].chat_id, self.records[root].at_s);
        let mut branches = Vec::new();
        let requests = self.follow(root, None, &mut branches);
        let mut children = Vec::new();
        while let Some((first, parent)) = branches.pop() {
            let (line, chat, at_s) = {
                let r = &self.records[first];
                (r.line, r.chat_id, r.at_s)
            };
            let requests = self.follow(first, Some(parent), &mut branches);
            let child = self.named(format!("{root_chat}/{chat}"), at_s - start_s, requests);
            children.push((line, child));
        }
        children.sort_by(|(la, a), (lb, b)| a.start_s.total_cmp(&b.start_s).then(la.cmp(lb)));
        Session {
            children: children.into_iter().map(|(_, s)| s).collect(),
            ..self.named(root_chat.to_string(), start_s, requests)
        }
    }

    /// A session of this file called `chat`, starting `start_s` seconds in.
    fn named(&self, chat: String, start_s: f64, requests: Vec<TraceRequest>) -> Session {
        Session {
            id: format!("{}#{chat}", self.stem),
            scope: self.scope,
            block_size: self.block_size,
            start_s: start_s.max(0.0),
            end_s: None,
            requests,
            children: Vec::new(),
        }
    }

    /// The requests from `first` down each record's earliest child; `parent` is the record
    /// `first` follows, if any. Later children go to `branches`, with the record they follow.
    fn follow(
        &mut self,
        first: usize,
        parent: Option<usize>,
        branches: &mut Vec<(usize, usize)>,
    ) -> Vec<TraceRequest> {
        let origin_s = self.records[first].at_s;
        let mut requests: Vec<TraceRequest> = Vec::new();
        let (mut at, mut prev) = (Some(first), parent);
        while let Some(i) = at {
            self.seen[i] = true;
            let after_s = prev.map_or(self.records[i].at_s, |p| self.records[p].at_s);
            let r = &mut self.records[i];
            let offset_s = (r.at_s - origin_s).max(requests.last().map_or(0.0, |q| q.offset_s));
            requests.push(TraceRequest {
                offset_s,
                input_tokens: r.input_tokens,
                output_tokens: r.output_tokens,
                hash_ids: std::mem::take(&mut r.hash_ids),
                think_time_s: (r.at_s - after_s).max(0.0),
                api_time_s: 0.0,
            });
            let kids = &self.children[i];
            branches.extend(kids.iter().skip(1).map(|&k| (k, i)));
            (at, prev) = (kids.first().copied(), Some(i));
        }
        requests
    }
}

/// The error for a record no conversation reached: its parents loop. Names the loop's first
/// record in the file.
fn parent_loop(file: &Path, records: &[Record], unseen: usize) -> String {
    let index: HashMap<u64, usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.chat_id, i))
        .collect();
    // Every ancestor of an unreached record is in the file (else it would start a session),
    // so following parents must come back to a record already passed.
    let mut path: Vec<usize> = Vec::new();
    let mut place: HashMap<usize, usize> = HashMap::new();
    let mut at = unseen;
    while !place.contains_key(&at) {
        place.insert(at, path.len());
        path.push(at);
        match records[at].parent.and_then(|p| index.get(&p)) {
            Some(&parent) => at = parent,
            None => break,
        }
    }
    let mut cycle = path.split_off(place.get(&at).copied().unwrap_or(0));
    let first = cycle
        .iter()
        .enumerate()
        .min_by_key(|(_, i)| records[**i].line)
        .map_or(0, |(k, _)| k);
    cycle.rotate_left(first);
    let chain: Vec<String> = cycle
        .iter()
        .chain(cycle.first())
        .map(|&i| records[i].chat_id.to_string())
        .collect();
    format!(
        "{}:{}: field `parent_chat_id`: chat {}'s parents loop back to it ({})",
        file.display(),
        records[cycle[0]].line,
        records[cycle[0]].chat_id,
        chain.join(" → ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<TraceSet> {
        let mut set = TraceSet::default();
        parse(Path::new("q.jsonl"), text, 7, BLOCK_SIZE, &mut set)?;
        Ok(set)
    }

    /// A record line; `parent` -1 starts a conversation.
    fn rec(chat: i64, parent: i64, t: f64, input: u32, ids: &[u64]) -> String {
        format!(
            r#"{{"chat_id": {chat}, "parent_chat_id": {parent}, "timestamp": {t}, "input_length": {input}, "output_length": 5, "type": "text", "turn": 1, "hash_ids": {ids:?}}}"#
        ) + "\n"
    }

    #[test]
    fn a_chain_is_one_session_spaced_in_seconds() {
        let text = [
            rec(10, -1, 1.5, 32, &[1, 2]),
            rec(20, -1, 2.0, 16, &[9]),
            rec(11, 10, 4.0, 48, &[1, 2, 3]),
            rec(12, 11, 9.25, 64, &[1, 2, 3, 4]),
        ]
        .concat();
        let set = parse_text(&text).expect("parses");
        assert!(set.skipped.is_empty() && set.warnings.is_empty());
        assert_eq!(set.sessions.len(), 2);
        let s = &set.sessions[0];
        assert_eq!(
            (s.id.as_str(), s.start_s, s.scope, s.block_size),
            ("q#10", 1.5, 7, 16)
        );
        let times: Vec<(f64, f64)> = s
            .requests
            .iter()
            .map(|r| (r.offset_s, r.think_time_s))
            .collect();
        assert_eq!(times, [(0.0, 0.0), (2.5, 2.5), (7.75, 5.25)]);
        assert_eq!(s.requests[2].hash_ids, [1, 2, 3, 4]);
        assert_eq!(set.sessions[1].id, "q#20");
    }

    #[test]
    fn later_children_branch_into_child_sessions_of_the_conversation() {
        // 1 → 2 → 3, and 1 → 4 (a second answer to 1), and 4 → 5, 4 → 6.
        let text = [
            rec(1, -1, 10.0, 16, &[1]),
            rec(4, 1, 13.0, 32, &[1, 4]),
            rec(2, 1, 12.0, 32, &[1, 2]),
            rec(3, 2, 15.0, 48, &[1, 2, 3]),
            rec(6, 4, 20.0, 48, &[1, 4, 6]),
            rec(5, 4, 18.0, 48, &[1, 4, 5]),
        ]
        .concat();
        let set = parse_text(&text).expect("parses");
        assert_eq!(set.sessions.len(), 1);
        let s = &set.sessions[0];
        assert_eq!(s.total_requests(), 6, "each record is replayed once");
        let main: Vec<&[u64]> = s.requests.iter().map(|r| &r.hash_ids[..]).collect();
        assert_eq!(main, [&[1][..], &[1, 2], &[1, 2, 3]]);
        let branches: Vec<(&str, f64, f64, usize)> = s
            .children
            .iter()
            .map(|c| {
                (
                    c.id.as_str(),
                    c.start_s,
                    c.requests[0].think_time_s,
                    c.requests.len(),
                )
            })
            .collect();
        assert_eq!(branches, [("q#1/4", 3.0, 3.0, 2), ("q#1/6", 10.0, 7.0, 1)]);
        // The branch from 1 continues with 4's earliest child, 5.
        assert_eq!(s.children[0].requests[1].hash_ids, [1, 4, 5]);
        assert_eq!(s.children[0].requests[1].offset_s, 5.0);
        assert!(
            s.children
                .iter()
                .all(|c| c.scope == 7 && c.block_size == 16)
        );
    }

    #[test]
    fn a_child_stamped_before_its_parent_follows_it_at_once() {
        let text = [rec(1, -1, 5.0, 16, &[1]), rec(2, 1, 4.0, 32, &[1, 2])].concat();
        let set = parse_text(&text).expect("parses");
        let r = &set.sessions[0].requests[1];
        assert_eq!((r.offset_s, r.think_time_s), (0.0, 0.0));
    }

    #[test]
    fn orphans_start_sessions_with_one_warning() {
        let text = [
            rec(1, 90, 1.0, 16, &[1]),
            rec(2, 1, 2.0, 32, &[1, 2]),
            rec(3, 91, 3.0, 16, &[7]),
        ]
        .concat();
        let set = parse_text(&text).expect("parses");
        let ids: Vec<&str> = set.sessions.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["q#1", "q#3"]);
        assert_eq!(set.sessions[0].requests.len(), 2);
        assert_eq!(set.warnings.len(), 1, "{:?}", set.warnings);
        assert!(
            set.warnings[0].starts_with(
                "q.jsonl:1: field `parent_chat_id`: 2 record(s) name a parent that is not in the file (this one names 90)"
            ),
            "{}",
            set.warnings[0]
        );
    }

    #[test]
    fn a_parent_left_out_as_malformed_orphans_its_children() {
        let text = [
            "{\"chat_id\": 1, \"parent_chat_id\": -1, \"timestamp\": 0, \"input_length\": 16, \"output_length\": 1, \"turn\": \"one\"}\n".to_owned(),
            rec(2, 1, 2.0, 32, &[1, 2]),
        ]
        .concat();
        let set = parse_text(&text).expect("parses");
        assert_eq!(
            (
                set.skipped[0].line,
                set.skipped[0].field.as_str(),
                set.sessions.len()
            ),
            (1, "turn", 1)
        );
        assert_eq!(set.warnings.len(), 1);
    }

    #[test]
    fn malformed_records_name_their_line_and_field() {
        let text = [
            rec(1, -1, 0.0, 16, &[1]),
            "{\"parent_chat_id\": -1, \"timestamp\": 1, \"input_length\": 16, \"output_length\": 1}\n".to_owned(),
            "{\"chat_id\": 3, \"timestamp\": 1, \"input_length\": 16, \"output_length\": 1, \"type\": 4}\n".to_owned(),
            rec(4, -1, -2.0, 16, &[1]),
            rec(5, -1, 1.0, 0, &[]),
            "not json\n".to_owned(),
        ]
        .concat();
        let set = parse_text(&text).expect("parses");
        let skipped: Vec<(usize, &str)> = set
            .skipped
            .iter()
            .map(|s| (s.line, s.field.as_str()))
            .collect();
        assert_eq!(
            skipped,
            [
                (2, "chat_id"),
                (3, "type"),
                (4, "timestamp"),
                (5, "input_length"),
                (6, "")
            ]
        );
        assert_eq!(set.sessions.len(), 1);
    }

    #[test]
    fn an_absent_or_null_parent_starts_a_conversation() {
        let text = concat!(
            "{\"chat_id\": 1, \"timestamp\": 0, \"input_length\": 16, \"output_length\": 1}\n",
            "{\"chat_id\": 2, \"parent_chat_id\": null, \"timestamp\": 1, \"input_length\": 16, \"output_length\": 1}\n",
        );
        let set = parse_text(text).expect("parses");
        assert_eq!(set.sessions.len(), 2);
        assert!(set.warnings.is_empty());
    }

    #[test]
    fn a_repeated_chat_id_is_an_error_naming_both_lines() {
        let text = [
            rec(1, -1, 0.0, 16, &[1]),
            rec(2, 1, 1.0, 16, &[1]),
            rec(1, -1, 2.0, 16, &[1]),
        ]
        .concat();
        let err = parse_text(&text).expect_err("duplicate");
        assert_eq!(
            err.to_string(),
            "q.jsonl:3: field `chat_id`: chat 1 is already line 1"
        );
    }

    #[test]
    fn parents_that_loop_are_an_error_naming_the_loop() {
        let text = [
            rec(1, -1, 0.0, 16, &[1]),
            rec(7, 9, 1.0, 16, &[1]),
            rec(8, 7, 2.0, 16, &[1]),
            rec(9, 8, 3.0, 16, &[1]),
        ]
        .concat();
        let err = parse_text(&text).expect_err("loop");
        assert_eq!(
            err.to_string(),
            "q.jsonl:2: field `parent_chat_id`: chat 7's parents loop back to it (7 → 9 → 8 → 7)"
        );
        let own = parse_text(&rec(3, 3, 0.0, 16, &[1])).expect_err("its own parent");
        assert!(own.to_string().contains("(3 → 3)"), "{own}");
    }

    #[test]
    fn a_file_without_requests_is_reported() {
        let set = parse_text("\n\n").expect("parses");
        assert_eq!(set.skipped[0].reason, "no requests in the file");
    }
}
