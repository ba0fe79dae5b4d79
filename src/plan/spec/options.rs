//! A spec's `replay:` and `tester:` options: deserialized into the cell's typed workload when
//! the spec loads ([`crate::base::workload::options`]), so that a misspelt option or a bad value is
//! reported at its file:line:column instead of when the cell runs on a cluster node.

use indexmap::IndexMap;
use serde::Serialize;
use serde_norway::Value;

use crate::base::workload::Workload;
use crate::base::workload::options::{self as typed, OptionError};
use crate::base::workload::replay::ReplayArgs;
use crate::base::workload::tester::{
    CacheRateArgs, SinglePromptArgs, TestArgs, Tester, WorkingSetArgs,
};
use crate::base::yaml::{SpecError, YamlDoc};

/// The workload a spec's cells run, before each cell sets its own part (users, duration, the
/// model's name...), and the options the spec set, which the cell's defaults give way to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpecWorkload {
    pub workload: Workload,
    /// The spec's option names, as field names (`max_users`, `api`).
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
const TESTER_KINDS: &[&str] = &["single-prompt", "cache-rate", "working-set"];

/// The replay a spec's cells run, from its `replay:` options. A sweep's replays ask for exactly
/// each request's trace output length (`--ignore-eos`) unless the spec says `ignore_eos: false`:
/// with EOS honoured a model, random or real, stops at a length of its own, and the decode load
/// no longer follows the trace.
pub(super) fn replay(
    doc: &YamlDoc,
    options: &IndexMap<String, Value>,
) -> Result<SpecWorkload, SpecError> {
    let mut args: ReplayArgs = typed(doc, "replay", options, RESERVED_REPLAY_KEYS)?;
    let set = option_ids(options);
    if !set.iter().any(|o| o == "ignore_eos") {
        args.ignore_eos = true;
    }
    // The cell's own part (users, duration) is checked again when a cell is rendered.
    args.check()
        .map_err(|e| doc.error(&key_of(options, "replay", e.field), e.message))?;
    Ok(SpecWorkload {
        workload: Workload::Replay(args),
        options: set,
    })
}

/// The synthetic test a spec's cells run, from its `tester:` options (`kind` names the test).
pub(super) fn tester(
    doc: &YamlDoc,
    map: &IndexMap<String, Value>,
) -> Result<SpecWorkload, SpecError> {
    let mut options = map.clone();
    options.shift_remove("kind");
    let reserved = RESERVED_TESTER_KEYS;
    let tester = match map.get("kind").and_then(Value::as_str) {
        Some("single-prompt") => Tester::SinglePrompt(typed::<SinglePromptArgs>(
            doc, "tester", &options, reserved,
        )?),
        Some("cache-rate") => {
            Tester::CacheRate(typed::<CacheRateArgs>(doc, "tester", &options, reserved)?)
        }
        Some("working-set") => {
            Tester::WorkingSet(typed::<WorkingSetArgs>(doc, "tester", &options, reserved)?)
        }
        _ => {
            return Err(doc.error(
                "tester.kind",
                format!("must be one of {}", TESTER_KINDS.join(", ")),
            ));
        }
    };
    Ok(SpecWorkload {
        workload: Workload::Test(TestArgs { tester }),
        options: option_ids(&options),
    })
}

fn option_ids(options: &IndexMap<String, Value>) -> Vec<String> {
    options.keys().map(|k| typed::field_name(k)).collect()
}

/// `section`'s `options` deserialized into `T`; an error points at the option it is about.
fn typed<T>(
    doc: &YamlDoc,
    section: &str,
    options: &IndexMap<String, Value>,
    reserved: &[&str],
) -> Result<T, SpecError>
where
    T: clap::Args + clap::FromArgMatches + Serialize + serde::de::DeserializeOwned,
{
    let mut values = IndexMap::new();
    for (key, value) in options {
        let value = serde_json::to_value(value)
            .map_err(|e| doc.error(&format!("{section}.{key}"), e.to_string()))?;
        values.insert(key.clone(), value);
    }
    typed::from_options(&values, reserved).map_err(|e| located(doc, section, e))
}

/// An option's error at its key in the spec.
fn located(doc: &YamlDoc, section: &str, e: OptionError) -> SpecError {
    match e.key {
        Some(key) => doc.error(&format!("{section}.{key}"), e.message),
        None => doc.error(section, e.message),
    }
}

/// The spec's key for field `field` of `section` (`max-users` where the spec spells it so), for
/// a value checked once the arguments are whole.
fn key_of(options: &IndexMap<String, Value>, section: &str, field: &str) -> String {
    match options.keys().find(|k| typed::field_name(k) == field) {
        Some(key) => format!("{section}.{key}"),
        None => section.to_owned(),
    }
}
