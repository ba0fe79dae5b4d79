//! Mooncake / AIPerf JSONL: one request per line; lines with a `session_id` form sessions whose
//! turns follow each other after `delay` ms, lines without one are independent requests.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::{Session, Skipped, TraceRequest, TraceSet, parse_json};

/// Tokens per hash id by convention: the files do not say.
pub(super) const BLOCK_SIZE: u32 = 512;

#[derive(Deserialize)]
struct Line {
    timestamp: Option<f64>,
    input_length: u32,
    output_length: u32,
    #[serde(default)]
    hash_ids: Vec<u64>,
    session_id: Option<serde_json::Value>,
    delay: Option<f64>,
}

pub(super) fn parse(file: &Path, text: &str, scope: u64, block_size: u32, set: &mut TraceSet) {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let first = set.sessions.len();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let skip = |field: String, reason: String| Skipped {
            file: file.to_path_buf(),
            line: i + 1,
            field,
            reason,
        };
        let l: Line = match parse_json(line) {
            Ok(l) => l,
            Err((field, e)) => {
                set.skipped
                    .push(skip(field, format!("malformed record: {e}")));
                continue;
            }
        };
        if l.input_length == 0 {
            set.skipped.push(skip(
                "input_length".into(),
                "a request needs at least one input token".into(),
            ));
            continue;
        }
        let at_s = l
            .timestamp
            .filter(|t| t.is_finite() && *t >= 0.0)
            .unwrap_or(0.0)
            / 1000.0;
        let request = |offset_s: f64| TraceRequest {
            offset_s,
            input_tokens: l.input_length,
            output_tokens: l.output_length,
            hash_ids: l.hash_ids.clone(),
            think_time_s: l
                .delay
                .filter(|d| d.is_finite() && *d >= 0.0)
                .unwrap_or(0.0)
                / 1000.0,
            api_time_s: 0.0,
        };
        let key = match &l.session_id {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        match key {
            Some(k) => match by_id.get(&k) {
                Some(&idx) => {
                    let s = &mut set.sessions[idx];
                    let offset = (at_s - s.start_s).max(0.0);
                    s.requests.push(request(offset));
                }
                None => {
                    by_id.insert(k.clone(), set.sessions.len());
                    set.sessions.push(Session {
                        id: format!("{stem}#{k}"),
                        scope,
                        block_size,
                        start_s: at_s,
                        end_s: None,
                        requests: vec![request(0.0)],
                        children: Vec::new(),
                    });
                }
            },
            None => set.sessions.push(Session {
                id: format!("{stem}:{}", i + 1),
                scope,
                block_size,
                start_s: at_s,
                end_s: None,
                requests: vec![request(0.0)],
                children: Vec::new(),
            }),
        }
    }
    if set.sessions.len() == first && set.skipped.last().is_none_or(|s| s.file != file) {
        set.skipped.push(Skipped {
            file: file.to_path_buf(),
            line: 0,
            field: String::new(),
            reason: "no requests in the file".into(),
        });
    }
}
