//! The inputs the fuzz targets found (and hand-written hostile ones of the same kinds), kept in
//! fuzz/regressions/TARGET/: each target's parser must take every one without panicking, on the
//! stable toolchain, in the normal test run.

use std::path::PathBuf;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("spec", kvsweep::fuzz::spec),
    ("kvct", kvsweep::fuzz::kvct),
    ("mooncake", kvsweep::fuzz::mooncake),
    ("sse", kvsweep::fuzz::sse),
    ("prometheus", kvsweep::fuzz::prometheus),
    ("artifact_zip", kvsweep::fuzz::artifact_zip),
];

#[test]
fn every_kept_input_is_handled_without_a_panic() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut seen = 0;
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: no kept inputs", dir.display());
        for file in files {
            let data = std::fs::read(&file).expect("read");
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{} panicked on {}", name, file.display());
            seen += 1;
        }
    }
    assert!(seen >= TARGETS.len());
}
