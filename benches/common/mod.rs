//! Helpers shared by the trace benchmarks (a folder, so Cargo does not take it for a bench).

use std::path::{Path, PathBuf};

/// The sample traces of the shared folder.
pub fn sample_traces() -> Vec<PathBuf> {
    let samples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("traces/samples/kv-cache-tester");
    kvsweep::data::trace::list_files(&[samples]).expect("sample traces")
}

/// `files` copied into `dir` over and over (as `cN_NAME`) until the copies pass `bytes`: a large
/// corpus from the samples. Returns the copies and their total size.
pub fn corpus(files: &[PathBuf], dir: &Path, bytes: u64) -> (Vec<PathBuf>, u64) {
    let mut big = Vec::new();
    let mut total = 0u64;
    for copy in 0.. {
        for f in files {
            let dest = dir.join(format!(
                "c{copy:04}_{}",
                f.file_name().expect("name").to_string_lossy()
            ));
            total += std::fs::copy(f, &dest).expect("copy");
            big.push(dest);
            if total >= bytes {
                return (big, total);
            }
        }
    }
    unreachable!("the loop returns once the corpus is large enough")
}
