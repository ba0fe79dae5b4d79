//! The command line itself: help, version, and subcommands that are not built yet.

use crate::common;

use common::{kvsweep_err, kvsweep_ok, repo_root};

const SUBCOMMANDS: &[&str] = &[
    "matrix",
    "render",
    "sim-server",
    "replay",
    "metrics",
    "run-cell",
    "cell",
    "sweep",
    "slurm",
    "collect",
    "compare",
    "artifacts",
    "trace",
    "oracle",
    "kv-size",
    "test",
    "calibrate",
    "predict",
    "history",
    "gate",
    "traces",
];

#[test]
fn help_lists_every_subcommand_with_a_line() {
    let help = kvsweep_ok(&["--help"]);
    for sub in SUBCOMMANDS {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{sub} ")))
            .unwrap_or_else(|| panic!("`{sub}` missing from --help:\n{help}"));
        assert!(
            line.trim().len() > sub.len() + 10,
            "`{sub}` has no description: {line}"
        );
    }
}

#[test]
fn version_names_the_commit() {
    let version = kvsweep_ok(&["--version"]);
    let version = version.trim();
    let inner = version
        .strip_prefix(concat!("kvsweep ", env!("CARGO_PKG_VERSION"), " ("))
        .and_then(|v| v.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected version line `{version}`"));
    let commit = inner.trim_end_matches("-dirty");
    if repo_root().join(".git").exists() {
        assert_eq!(commit.len(), 12, "{version}");
        assert!(commit.chars().all(|c| c.is_ascii_hexdigit()), "{version}");
    } else {
        assert_eq!(commit, "unknown");
    }
}

#[test]
fn errors_exit_non_zero_with_a_message() {
    let err = kvsweep_err(&["matrix"]);
    assert!(err.contains("<SPEC>"), "{err}");
}
