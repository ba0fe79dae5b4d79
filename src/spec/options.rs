//! A spec's `replay:` and `tester:` options: checked when the spec loads, by parsing them as the
//! `kvsweep replay` or `kvsweep test KIND` command line would, so a misspelt option or a bad
//! value is reported at its file:line:column instead of when the cell runs on a cluster node;
//! and turned into the typed workload every cell of the sweep carries.

use indexmap::IndexMap;
use serde::Serialize;
use serde_norway::Value;

use crate::workload::{self, Workload};
use crate::yaml::{SpecError, YamlDoc};

/// The workload a spec's cells run, before each cell sets its own part (users, duration, the
/// model's name...), and the options the spec set, which the cell's defaults give way to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpecWorkload {
    pub workload: Workload,
    /// The spec's option names, as flag ids (`max_users`, `api`).
    pub options: Vec<String>,
}

impl SpecWorkload {
    /// Whether the spec set option `id` itself.
    pub fn sets(&self, id: &str) -> bool {
        self.options.iter().any(|o| o == id)
    }
}

/// Replay options that the cell sets itself and a spec must not override.
const RESERVED_REPLAY_KEYS: &[&str] = &[
    "url", "users", "duration", "out", "traces", "format", "model",
];

/// `kvsweep test` flags the cell sets itself.
const RESERVED_TESTER_KEYS: &[&str] = &["url", "output_dir", "model", "api", "force_restart"];

/// The testers a cell can run.
pub const TESTER_KINDS: &[&str] = &["single-prompt", "cache-rate", "working-set"];

/// Stand-ins for the flags a cell sets itself, so the spec's own options parse on their own;
/// render replaces each with the cell's value.
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

/// The replay a spec's cells run, from its `replay:` options. A sweep's replays ask for exactly
/// each request's trace output length (`--ignore-eos`) unless the spec says `ignore_eos: false`:
/// with EOS honoured a model, random or real, stops at a length of its own, and the decode load
/// no longer follows the trace.
pub(super) fn replay(
    doc: &YamlDoc,
    options: &IndexMap<String, Value>,
) -> Result<SpecWorkload, SpecError> {
    let workload = parse(doc, "replay", None, options, RESERVED_REPLAY_KEYS)?;
    let mut spec = SpecWorkload {
        workload,
        options: option_ids(options),
    };
    let eos_set = spec.sets("ignore_eos");
    if let Workload::Replay(args) = &mut spec.workload
        && !eos_set
    {
        args.ignore_eos = true;
    }
    Ok(spec)
}

/// The synthetic test a spec's cells run, from its `tester:` options (`kind` names the test).
pub(super) fn tester(
    doc: &YamlDoc,
    map: &IndexMap<String, Value>,
) -> Result<SpecWorkload, SpecError> {
    let kind = match map.get("kind") {
        Some(Value::String(k)) if TESTER_KINDS.contains(&k.as_str()) => k.clone(),
        _ => {
            return Err(doc.error(
                "tester.kind",
                format!("must be one of {}", TESTER_KINDS.join(", ")),
            ));
        }
    };
    let mut options = map.clone();
    options.shift_remove("kind");
    let workload = parse(doc, "tester", Some(&kind), &options, RESERVED_TESTER_KEYS)?;
    Ok(SpecWorkload {
        workload,
        options: option_ids(&options),
    })
}

fn option_ids(options: &IndexMap<String, Value>) -> Vec<String> {
    options.keys().map(|k| k.replace('-', "_")).collect()
}

/// Parses `section`'s `options` (`replay`, or `tester` of `kind`) as the cell's command line
/// would; an error points at the option it is about.
fn parse(
    doc: &YamlDoc,
    section: &str,
    kind: Option<&str>,
    options: &IndexMap<String, Value>,
    reserved: &[&str],
) -> Result<Workload, SpecError> {
    let (head, stand_ins): (Vec<&str>, _) = match kind {
        Some(kind) => (vec!["test", kind], TESTER_STAND_INS),
        None => (vec!["replay"], REPLAY_STAND_INS),
    };
    let args = flag_args(doc, section, options, reserved, &workload::switches(&head))?;
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
    let e = match workload::parse(&argv) {
        Ok(w) => return Ok(w),
        Err(e) => e,
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

/// Turns a mapping of options into command-line flags: `max_delay: 60` → `--max-delay 60`,
/// `recycle: true` → `--recycle`, a list repeats the flag.
fn flag_args(
    doc: &YamlDoc,
    section: &str,
    options: &IndexMap<String, Value>,
    reserved: &[&str],
    switches: &[String],
) -> Result<Vec<String>, SpecError> {
    let mut args = Vec::new();
    for (key, value) in options {
        let field = format!("{section}.{key}");
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
        {
            return Err(doc.error(
                &field,
                "option names use lowercase letters, digits, `_` and `-`",
            ));
        }
        let flag = format!("--{}", key.replace('_', "-"));
        if reserved.contains(&key.replace('-', "_").as_str()) {
            return Err(doc.error(
                &field,
                format!("`{flag}` is set by the cell itself; use the spec's own fields instead"),
            ));
        }
        if switches.iter().any(|s| *s == key.replace('-', "_")) && !value.is_bool() {
            return Err(doc.error(&field, "must be true or false"));
        }
        let scalar = |v: &Value, field: &str| -> Result<String, SpecError> {
            match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                _ => Err(doc.error(
                    field,
                    "must be a string, a number, a boolean or a list of them",
                )),
            }
        };
        match value {
            Value::Bool(true) => args.push(flag),
            Value::Bool(false) => {}
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    args.push(flag.clone());
                    args.push(scalar(item, &format!("{field}[{i}]"))?);
                }
            }
            other => {
                args.push(flag);
                args.push(scalar(other, &field)?);
            }
        }
    }
    Ok(args)
}
