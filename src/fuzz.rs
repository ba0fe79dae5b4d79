//! Entry points shared by the fuzz targets (`fuzz/`, run by `scripts/fuzz.sh`) and by the
//! regression tests of what they found (`tests/it/fuzz_regressions.rs`): each feeds arbitrary bytes
//! to one parser. Rejecting the input is fine; panicking, hanging or allocating without bound is
//! a bug.

use std::path::Path;

use crate::base::kinds;
use crate::base::runner::RunnerSet;
use crate::data::trace::{self, TraceSet};
use crate::plan::spec::{self, LoadOptions};

/// A sweep spec (either shape), checked against the built-in runners (read once).
pub fn spec(data: &[u8]) {
    static RUNNERS: std::sync::OnceLock<Option<RunnerSet>> = std::sync::OnceLock::new();
    let Some(runners) = RUNNERS.get_or_init(|| RunnerSet::builtin().ok()) else {
        return;
    };
    let text = String::from_utf8_lossy(data).into_owned();
    let opts = LoadOptions {
        key: None,
        runner: None,
        runners,
    };
    let _ = spec::load_text(Path::new("fuzz.yaml"), text, opts);
}

fn parse_trace(data: &[u8], name: &str, format: kinds::TraceFormat) {
    let text = String::from_utf8_lossy(data);
    let opts = trace::LoadOptions {
        format,
        jsonl_block_size: None,
        strict: false,
    };
    let mut set = TraceSet::default();
    let _ = trace::parse_file(Path::new(name), &text, 0, opts, &mut set);
}

/// A kv-cache-tester trace file.
pub fn kvct(data: &[u8]) {
    parse_trace(data, "fuzz.json", kinds::TraceFormat::Kvct);
}

/// A Mooncake JSONL trace file.
pub fn mooncake(data: &[u8]) {
    parse_trace(data, "fuzz.jsonl", kinds::TraceFormat::Mooncake);
}

/// An SSE stream, fed in two pieces split where the first byte says.
pub fn sse(data: &[u8]) {
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut scanner = crate::run::openai::client::SseScanner::default();
    let mut events = 0usize;
    for piece in [&data[..split], &data[split..]] {
        scanner.feed(piece, |_| events += 1);
    }
}

/// A Prometheus text exposition.
pub fn prometheus(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parsed = crate::run::metrics::parse::parse(&text);
    let _ = parsed.sum("vllm:prefix_cache_hits_total");
}

/// A cell artifact zip, extracted with a 1 MiB cap.
pub fn artifact_zip(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let zip = dir.path().join("a.zip");
    if std::fs::write(&zip, data).is_err() {
        return;
    }
    let _ = crate::base::archive::extract_zip(&zip, &dir.path().join("out"), 1 << 20);
}
