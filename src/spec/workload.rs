//! A cell's workload: the `kvsweep replay` or `kvsweep test KIND` command line it runs, and the
//! check of a spec's `replay:` and `tester:` options against that command line when the spec
//! loads, so a misspelt option or a bad value is reported at its file:line:column instead of
//! when the cell runs on a cluster node.

use clap::Parser;
use indexmap::IndexMap;

use crate::replay::ReplayArgs;
use crate::testers::TestArgs;
use crate::yaml::{SpecError, YamlDoc};

/// A workload command line, parsed exactly as the `kvsweep` command line would parse it.
#[derive(Parser)]
#[command(no_binary_name = true)]
pub struct WorkloadFlags {
    #[command(subcommand)]
    pub command: Workload,
}

/// What a cell runs against its engine.
#[derive(clap::Subcommand)]
pub enum Workload {
    Replay(ReplayArgs),
    Test(TestArgs),
}

/// Parses a workload command line (`replay ...` or `test KIND ...`).
pub fn parse(argv: &[String]) -> Result<Workload, clap::Error> {
    WorkloadFlags::try_parse_from(argv).map(|f| f.command)
}

/// Stand-ins for the flags a cell sets itself, so the spec's own options parse on their own.
const REPLAY_STAND_INS: &[&str] = &[
    "--model",
    "m",
    "--api",
    "completions",
    "--users",
    "1",
    "--duration",
    "1",
    "--traces",
    "traces",
    "--url",
    "http://127.0.0.1:1",
    "--out",
    "out",
];
const TESTER_STAND_INS: &[&str] = &[
    "--model",
    "m",
    "--api",
    "completions",
    "--url",
    "http://127.0.0.1:1",
    "--output-dir",
    "out",
];

/// Checks the flags `args` made from `section`'s `options` (`replay` or `tester`, of tester
/// `kind`) by parsing them as the cell will; an error points at the option it is about.
pub(super) fn check(
    doc: &YamlDoc,
    section: &str,
    kind: Option<&str>,
    options: &IndexMap<String, serde_norway::Value>,
    args: &[String],
) -> Result<(), SpecError> {
    let (head, stand_ins): (Vec<&str>, _) = match kind {
        Some(kind) => (vec!["test", kind], TESTER_STAND_INS),
        None => (vec!["replay"], REPLAY_STAND_INS),
    };
    // A stand-in the spec may set itself (the replay's `--api`) gives way to the spec's value.
    let stand_ins = stand_ins
        .chunks(2)
        .filter(|pair| !args.iter().any(|a| a == pair[0]))
        .flatten();
    let argv: Vec<String> = head
        .iter()
        .chain(stand_ins)
        .map(|s| (*s).to_owned())
        .chain(args.iter().cloned())
        .collect();
    let Err(e) = parse(&argv) else {
        return Ok(());
    };
    // The flag clap names (`--max-users <N>` or `--colour`), back to the option it came from.
    let flag = e
        .get(clap::error::ContextKind::InvalidArg)
        .map(|v| v.to_string())
        .and_then(|v| v.split([' ', '=']).next().map(str::to_owned));
    let key = flag.as_deref().and_then(|flag| {
        options
            .keys()
            .find(|k| format!("--{}", k.replace('_', "-")) == flag)
    });
    let field = match key {
        Some(k) => format!("{section}.{k}"),
        None => section.to_owned(),
    };
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    let message = first.strip_prefix("error: ").unwrap_or(first);
    let what = match kind {
        Some(kind) => format!("`kvsweep test {kind}`"),
        None => "`kvsweep replay`".to_owned(),
    };
    Err(doc.error(&field, format!("{message} (as a {what} option)")))
}
