//! Agentic traces: the formats the field uses (kv-cache-tester JSON, Mooncake JSONL, Qwen-Bailian
//! JSONL), read into one shape, and the prompts built from them.
//!
//! A trace set is a list of [`Session`]s (one conversation each, with subagents or branches as
//! child sessions that start part-way into their parent), each a list of [`TraceRequest`]s. Hash
//! ids name blocks of prompt content: equal ids in the same scope are equal content.

pub mod analyze;
mod bailian;
pub mod cli;
pub mod convert;
pub mod generate;
mod kvct;
mod mooncake;
pub mod prompt;
pub mod synth;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::base::kinds::TraceFormat;

/// One request of a session.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRequest {
    /// Seconds since the session started (its own `t`, or the JSONL timestamp).
    pub offset_s: f64,
    pub input_tokens: u32,
    pub output_tokens: u32,
    /// One id per `block_size` tokens of the prompt, from its start.
    pub hash_ids: Vec<u64>,
    /// The user's or tool's pause before this request (kv-cache-tester `think_time`, Mooncake
    /// `delay`, the gap after the parent's arrival in Qwen-Bailian).
    pub think_time_s: f64,
    /// How long the original API call took (kv-cache-tester `api_time`; 0 when unknown).
    pub(crate) api_time_s: f64,
}

/// One conversation: what one simulated user replays.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// `file` for a kv-cache-tester trace, `file/agent` for its subagents, `file#session` for
    /// Mooncake, `file#chat` for Qwen-Bailian (and `file#chat/chat` for its branches).
    pub id: String,
    /// Hash ids are equal content only within one scope (a kv-cache-tester file; a JSONL file).
    pub scope: u64,
    /// Tokens per hash id.
    pub block_size: u32,
    /// Seconds after its parent's start (subagents, branches) or after the file's start (JSONL).
    pub start_s: f64,
    /// When a subagent finished, in its parent's trace time (kv-cache-tester `t + duration_ms`);
    /// `None` where the trace does not say. The AgentX replay joins a subagent at the parent's
    /// first turn after it, as AIPerf does.
    pub end_s: Option<f64>,
    pub requests: Vec<TraceRequest>,
    /// Subagents or branches: sessions that run alongside this one from their `start_s`.
    pub children: Vec<Session>,
}

impl Session {
    /// Requests in this session and its subagents.
    pub fn total_requests(&self) -> usize {
        self.requests.len()
            + self
                .children
                .iter()
                .map(Session::total_requests)
                .sum::<usize>()
    }
}

/// A record that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub file: PathBuf,
    /// 1-based; 0 when the problem is the whole file.
    pub line: usize,
    pub field: String,
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.field.is_empty() {
            write!(f, ": field `{}`", self.field)?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Everything read from a list of trace paths.
#[derive(Debug, Clone, Default)]
pub struct TraceSet {
    pub sessions: Vec<Session>,
    pub skipped: Vec<Skipped>,
    /// Records that were read, but not quite as the file meant them (a Qwen-Bailian turn whose
    /// parent is not in the file), as `file:line: field: what happened`.
    pub warnings: Vec<String>,
    pub files: Vec<PathBuf>,
    /// xxh3 over every file's xxh3 (of its name and bytes), in order: which traces a result
    /// came from.
    pub digest: String,
}

/// Options for reading traces.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    pub format: TraceFormat,
    /// Tokens per hash id in JSON Lines files, whose records do not say; `None`: the format's
    /// convention (512 for Mooncake, 16 for Qwen-Bailian). kv-cache-tester files say their own.
    pub jsonl_block_size: Option<u32>,
    /// A malformed record is an error instead of a warning.
    pub strict: bool,
}

impl LoadOptions {
    /// Tokens per hash id in a JSON Lines file of `format`.
    fn block_size_for(&self, format: TraceFormat) -> u32 {
        self.jsonl_block_size.unwrap_or(match format {
            TraceFormat::Bailian => bailian::BLOCK_SIZE,
            _ => mooncake::BLOCK_SIZE,
        })
    }
}

/// The trace files under `paths` (recursively, `*.json` and `*.jsonl`, in name order).
pub fn list_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        collect_files(path, &mut files)?;
    }
    if files.is_empty() {
        bail!(
            "no trace files (*.json, *.jsonl) under {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(files)
}

/// The format of one file's text under `opts`.
pub(crate) fn file_format(file: &Path, text: &str, opts: LoadOptions) -> TraceFormat {
    match opts.format {
        TraceFormat::Auto => detect(file, text),
        other => other,
    }
}

/// Parses one file's text into `set`; `index` (its place in the set) makes its hash scope.
pub(crate) fn parse_file(
    file: &Path,
    text: &str,
    index: usize,
    opts: LoadOptions,
    set: &mut TraceSet,
) -> Result<()> {
    let scope = crate::base::rng::mix(index as u64 + 1);
    let before = set.skipped.len();
    match file_format(file, text, opts) {
        format @ TraceFormat::Mooncake => {
            mooncake::parse(file, text, scope, opts.block_size_for(format), set);
        }
        format @ TraceFormat::Bailian => {
            bailian::parse(file, text, scope, opts.block_size_for(format), set)?;
        }
        TraceFormat::Auto | TraceFormat::Kvct => kvct::parse(file, text, scope, set),
    }
    if opts.strict && set.skipped.len() > before {
        bail!("{} (--strict)", set.skipped[before]);
    }
    Ok(())
}

/// `work(index, file)` for every file, on as many threads as there are cores, a file at a time
/// per thread; the results in file order.
pub(crate) fn per_file_parallel<T: Send>(
    files: &[PathBuf],
    work: impl Fn(usize, &Path) -> T + Sync,
) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(files.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, T)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(file) = files.get(i) else { break };
                        mine.push((i, work(i, file)));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a per-file worker panicked"))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, t)| t).collect()
}

/// Reads trace files and directories (recursively, `*.json` and `*.jsonl`, in name order),
/// several files at a time.
pub fn load(paths: &[PathBuf], opts: LoadOptions) -> Result<TraceSet> {
    let files = list_files(paths)?;
    let parsed = per_file_parallel(&files, |index, file| -> Result<(TraceSet, u64)> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(
            file.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        hasher.update(text.as_bytes());
        let mut one = TraceSet::default();
        parse_file(file, &text, index, opts, &mut one)?;
        Ok((one, hasher.digest()))
    });
    let mut set = TraceSet::default();
    // The set's digest: xxh3 over each file's xxh3 (of its name and bytes), in order.
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for one in parsed {
        let (one, digest) = one?;
        hasher.update(&digest.to_le_bytes());
        set.sessions.extend(one.sessions);
        set.skipped.extend(one.skipped);
        set.warnings.extend(one.warnings);
    }
    for skip in &set.skipped {
        eprintln!("warning: skipped {skip}");
    }
    for warning in &set.warnings {
        eprintln!("warning: {warning}");
    }
    set.digest = format!("{:016x}", hasher.digest());
    set.files = files;
    Ok(set)
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read trace path {}", path.display()))?;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("cannot list {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            collect_files(&entry, out)?;
        } else if entry
            .extension()
            .is_some_and(|e| e == "json" || e == "jsonl")
        {
            out.push(entry);
        }
    }
    Ok(())
}

/// JSON Lines files are `.jsonl`, or a first line that is a record with an `input_length` (a
/// kv-cache-tester file has `requests`); their first record has a `chat_id` in Qwen-Bailian, none
/// in Mooncake. Looking at the text, not parsing it: a kv-cache-tester file is often one line of
/// megabytes.
fn detect(file: &Path, text: &str) -> TraceFormat {
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let jsonl = file.extension().is_some_and(|e| e == "jsonl")
        || (first.contains("\"input_length\"") && !first.contains("\"requests\""));
    if !jsonl {
        TraceFormat::Kvct
    } else if first.contains("\"chat_id\"") {
        TraceFormat::Bailian
    } else {
        TraceFormat::Mooncake
    }
}

/// The 1-based line of byte offset `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Deserializes JSON text, naming the field (its path) that failed. The fast parser runs first;
/// only a failure is parsed again with path tracking, which costs a third of the time.
fn parse_json<'a, T: serde::Deserialize<'a>>(
    text: &'a str,
) -> Result<T, (String, serde_json::Error)> {
    if let Ok(v) = serde_json::from_str(text) {
        return Ok(v);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        let inner = e.into_inner();
        let field = if field.is_empty() {
            // A missing field is reported at its parent; its name is in the message.
            let msg = inner.to_string();
            msg.split('`')
                .nth(1)
                .filter(|_| msg.starts_with("missing field"))
                .unwrap_or_default()
                .to_owned()
        } else {
            field
        };
        (field, inner)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> LoadOptions {
        LoadOptions {
            format: TraceFormat::Auto,
            jsonl_block_size: None,
            strict: false,
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn kvct_subagents_become_child_sessions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = write(
            dir.path(),
            "t.json",
            r#"{"id": "t1", "block_size": 64, "requests": [
            {"t": 0, "type": "s", "in": 130, "out": 5, "hash_ids": [1, 2], "think_time": 0, "api_time": 1.5},
            {"t": 9, "type": "subagent", "agent_id": "a1", "requests": [
                {"t": 0, "type": "s", "in": 70, "out": 3, "hash_ids": [7]}]},
            {"t": 20, "type": "s", "in": 200, "out": 5, "hash_ids": [1, 2, 3], "think_time": 4.5}]}"#,
        );
        let set = load(&[f], opts()).expect("load");
        assert_eq!(set.sessions.len(), 1);
        let s = &set.sessions[0];
        assert_eq!(s.requests.len(), 2);
        assert_eq!(s.requests[1].think_time_s, 4.5);
        assert_eq!(s.children.len(), 1);
        assert_eq!(s.children[0].id, "t1/a1");
        assert_eq!(s.children[0].start_s, 9.0);
        assert_eq!(
            s.children[0].scope, s.scope,
            "subagents share their file's hash scope"
        );
        assert_eq!(s.total_requests(), 3);
    }

    #[test]
    fn malformed_records_are_skipped_with_file_line_and_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = write(
            dir.path(),
            "t.json",
            "{\"requests\": [\n{\"t\": 0, \"in\": 10, \"out\": 1, \"hash_ids\": []},\n{\"t\": 1, \"out\": 1, \"hash_ids\": []},\n{\"t\": \"x\", \"in\": 1}\n]}",
        );
        let set = load(std::slice::from_ref(&f), opts()).expect("load");
        assert_eq!(set.sessions[0].requests.len(), 1);
        assert_eq!(set.skipped.len(), 2);
        assert_eq!(
            (set.skipped[0].line, set.skipped[0].field.as_str()),
            (3, "in")
        );
        assert_eq!(set.skipped[1].line, 4);
        let err = load(
            &[f],
            LoadOptions {
                strict: true,
                ..opts()
            },
        )
        .expect_err("strict");
        assert!(
            err.to_string()
                .contains("t.json:3: field `in`: missing field"),
            "{err}"
        );
    }

    #[test]
    fn mooncake_lines_group_by_session() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = write(
            dir.path(),
            "m.jsonl",
            concat!(
                "{\"timestamp\": 1000, \"input_length\": 600, \"output_length\": 10, \"hash_ids\": [1, 2], \"session_id\": \"a\"}\n",
                "{\"timestamp\": 1500, \"input_length\": 100, \"output_length\": 10, \"hash_ids\": [9]}\n",
                "not json\n",
                "{\"timestamp\": 4000, \"input_length\": 1100, \"output_length\": 10, \"hash_ids\": [1, 2, 3], \"session_id\": \"a\", \"delay\": 2500}\n",
            ),
        );
        let set = load(&[f], opts()).expect("load");
        assert_eq!(set.sessions.len(), 2);
        let a = &set.sessions[0];
        assert_eq!((a.id.as_str(), a.start_s, a.block_size), ("m#a", 1.0, 512));
        assert_eq!(a.requests[1].offset_s, 3.0);
        assert_eq!(a.requests[1].think_time_s, 2.5);
        assert_eq!(set.sessions[1].start_s, 1.5);
        assert_eq!(set.skipped.len(), 1);
        assert_eq!(set.skipped[0].line, 3);
    }

    #[test]
    fn json_lines_with_a_chat_id_are_qwen_bailian() {
        let bailian = r#"{"chat_id": 1, "parent_chat_id": -1, "timestamp": 0.5, "input_length": 40, "output_length": 2, "hash_ids": [1, 2, 3]}"#;
        let mooncake = r#"{"timestamp": 500, "input_length": 40, "output_length": 2}"#;
        let kvct = r#"{"requests": [{"t": 0, "in": 1, "chat_id": 1, "input_length": 1}]}"#;
        assert_eq!(detect(Path::new("q.jsonl"), bailian), TraceFormat::Bailian);
        assert_eq!(detect(Path::new("q.json"), bailian), TraceFormat::Bailian);
        assert_eq!(
            detect(Path::new("m.jsonl"), mooncake),
            TraceFormat::Mooncake
        );
        assert_eq!(detect(Path::new("m.json"), mooncake), TraceFormat::Mooncake);
        assert_eq!(detect(Path::new("t.json"), kvct), TraceFormat::Kvct);
    }

    #[test]
    fn json_lines_block_sizes_default_per_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = write(
            dir.path(),
            "q.jsonl",
            r#"{"chat_id": 1, "parent_chat_id": -1, "timestamp": 0, "input_length": 40, "output_length": 2, "hash_ids": [1, 2, 3]}"#,
        );
        let m = write(
            dir.path(),
            "m.jsonl",
            r#"{"timestamp": 0, "input_length": 40, "output_length": 2, "hash_ids": [1]}"#,
        );
        let sizes = |jsonl_block_size| {
            let set = load(
                &[q.clone(), m.clone()],
                LoadOptions {
                    jsonl_block_size,
                    ..opts()
                },
            )
            .expect("load");
            set.sessions
                .iter()
                .map(|s| s.block_size)
                .collect::<Vec<_>>()
        };
        assert_eq!(sizes(None), [16, 512], "q.jsonl, then m.jsonl");
        assert_eq!(sizes(Some(32)), [32, 32]);
    }

    #[test]
    fn the_sample_traces_load_completely() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("traces/samples/kv-cache-tester");
        let set = load(&[dir], opts()).expect("sample traces");
        assert_eq!(set.files.len(), 15);
        assert_eq!(set.sessions.len(), 15);
        assert!(set.skipped.is_empty(), "{:?}", set.skipped.first());
        assert!(
            set.sessions
                .iter()
                .filter(|s| !s.children.is_empty())
                .count()
                == 2
        );
        assert_eq!(set.digest.len(), 16);
    }
}
