//! kv-cache-tester trace JSON: one conversation per file, subagents nested in it.

use std::path::Path;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Session, Skipped, TraceRequest, TraceSet, line_of, parse_json};

#[derive(Deserialize)]
struct File<'a> {
    id: Option<String>,
    block_size: Option<u32>,
    #[serde(borrow)]
    requests: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct Request<'a> {
    t: f64,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(rename = "in")]
    input: Option<u32>,
    out: Option<u32>,
    hash_ids: Option<Vec<u64>>,
    think_time: Option<f64>,
    api_time: Option<f64>,
    duration_ms: Option<f64>,
    agent_id: Option<String>,
    #[serde(borrow)]
    requests: Option<Vec<&'a RawValue>>,
}

pub(super) fn parse(file: &Path, text: &str, scope: u64, set: &mut TraceSet) {
    let parsed: File = match parse_json(text) {
        Ok(f) => f,
        Err((field, e)) => {
            set.skipped.push(Skipped {
                file: file.to_path_buf(),
                line: e.line(),
                field,
                reason: format!("not a kv-cache-tester trace: {e}"),
            });
            return;
        }
    };
    let block_size = parsed.block_size.filter(|b| *b > 0).unwrap_or(64);
    let name = parsed.id.unwrap_or_else(|| {
        file.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let mut session = Session {
        id: name,
        scope,
        block_size,
        start_s: 0.0,
        end_s: None,
        requests: Vec::new(),
        children: Vec::new(),
    };
    read_requests(file, text, &parsed.requests, &mut session, set);
    if session.requests.is_empty() && session.children.is_empty() {
        set.skipped.push(Skipped {
            file: file.to_path_buf(),
            line: 0,
            field: "requests".into(),
            reason: "the trace has no usable requests".into(),
        });
        return;
    }
    set.sessions.push(session);
}

fn read_requests(
    file: &Path,
    text: &str,
    raws: &[&RawValue],
    session: &mut Session,
    set: &mut TraceSet,
) {
    for raw in raws {
        let offset = raw.get().as_ptr() as usize - text.as_ptr() as usize;
        let skip = |field: &str, reason: String| Skipped {
            file: file.to_path_buf(),
            line: line_of(text, offset),
            field: field.to_owned(),
            reason,
        };
        let r: Request = match parse_json(raw.get()) {
            Ok(r) => r,
            Err((field, e)) => {
                set.skipped
                    .push(skip(&field, format!("malformed request: {e}")));
                continue;
            }
        };
        if r.kind.as_deref() == Some("subagent") {
            let mut child = Session {
                id: format!(
                    "{}/{}",
                    session.id,
                    r.agent_id.as_deref().unwrap_or("subagent")
                ),
                scope: session.scope,
                block_size: session.block_size,
                start_s: r.t,
                end_s: r
                    .duration_ms
                    .filter(|d| d.is_finite())
                    .map(|d| r.t + d.max(0.0) / 1000.0),
                requests: Vec::new(),
                children: Vec::new(),
            };
            read_requests(
                file,
                text,
                r.requests.as_deref().unwrap_or_default(),
                &mut child,
                set,
            );
            if !child.requests.is_empty() {
                session.children.push(child);
            }
            continue;
        }
        let (Some(input), Some(out), Some(hash_ids)) = (r.input, r.out, r.hash_ids) else {
            let field = if r.input.is_none() {
                "in"
            } else if r.out.is_none() {
                "out"
            } else {
                "hash_ids"
            };
            set.skipped.push(skip(field, "missing field".into()));
            continue;
        };
        if input == 0 {
            set.skipped.push(skip(
                "in",
                "a request needs at least one input token".into(),
            ));
            continue;
        }
        if !r.t.is_finite() || r.t < 0.0 {
            set.skipped
                .push(skip("t", format!("{} is not a time", r.t)));
            continue;
        }
        session.requests.push(TraceRequest {
            offset_s: r.t,
            input_tokens: input,
            output_tokens: out,
            hash_ids,
            think_time_s: r
                .think_time
                .filter(|v| v.is_finite() && *v >= 0.0)
                .unwrap_or(0.0),
            api_time_s: r
                .api_time
                .filter(|v| v.is_finite() && *v >= 0.0)
                .unwrap_or(0.0),
        });
    }
}
