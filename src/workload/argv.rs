//! Typed arguments back to the command line that parses into them.
//!
//! A cell's plan carries its workload typed; the runner script needs it as a command line.
//! Rather than a second, hand-kept list of flags that could drift from the first, this walks
//! clap's own definition of the arguments and reads each one's value from the serde form of
//! the struct: clap's argument ids are the field names, and both flatten the same groups
//! (`#[command(flatten)]` beside `#[serde(flatten)]`), so a new flag needs no change here. The
//! round-trip tests below hold the two definitions together.

use anyhow::{Context, Result, bail};
use clap::{ArgAction, Args, Command, FromArgMatches};
use serde::Serialize;
use serde_json::Value;

/// Which flags a command line states.
pub struct Choice<'a> {
    /// Field names of flags written out even at their default value.
    pub always: &'a [&'a str],
    /// Field names of flags left out whatever their value.
    pub leave_out: &'a [&'a str],
}

/// The flags that parse into `value`: those away from their defaults and those `choice` says
/// to write always, in the order clap defines them, less those `choice` leaves out.
pub fn flags<T>(value: &T, choice: &Choice<'_>) -> Result<Vec<String>>
where
    T: Serialize + Args + FromArgMatches,
{
    let command = T::augment_args(Command::new("kvsweep"));
    let now = serde_json::to_value(value).context("cannot serialize the arguments")?;
    let defaults = serde_json::to_value(defaults::<T>(&command)?)
        .context("cannot serialize the default arguments")?;
    let mut out = Vec::new();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if choice.leave_out.contains(&id) {
            continue;
        }
        let value = now
            .get(id)
            .with_context(|| format!("argument `{id}` has no field of that name"))?;
        let stated = arg.is_required_set() || choice.always.contains(&id);
        if !stated && defaults.get(id) == Some(value) {
            continue;
        }
        let Some(long) = arg.get_long() else {
            bail!("argument `{id}` is not a --flag");
        };
        let flag = format!("--{long}");
        match (arg.get_action(), value) {
            (_, Value::Null) => {}
            (ArgAction::SetTrue, Value::Bool(true)) => out.push(flag),
            (ArgAction::SetTrue, Value::Bool(false)) => {}
            (_, Value::Array(items)) => {
                for item in items {
                    out.extend([flag.clone(), scalar(id, item)?]);
                }
            }
            (_, v) => out.extend([flag, scalar(id, v)?]),
        }
    }
    Ok(out)
}

/// The arguments as clap gives them when only the required ones are set (to a stand-in).
fn defaults<T: FromArgMatches>(command: &Command) -> Result<T> {
    let mut argv = vec!["kvsweep".to_owned()];
    for arg in command.get_arguments().filter(|a| a.is_required_set()) {
        let long = arg
            .get_long()
            .with_context(|| format!("argument `{}` is not a --flag", arg.get_id()))?;
        argv.extend([format!("--{long}"), "1".to_owned()]);
    }
    let matches = command
        .clone()
        .try_get_matches_from(argv)
        .context("the arguments' defaults do not parse")?;
    Ok(T::from_arg_matches(&matches)?)
}

/// A value as the command line spells it.
fn scalar(id: &str, v: &Value) -> Result<String> {
    Ok(match v {
        Value::String(s) => s.clone(),
        // A whole number of seconds reads as one (`--duration 600`, not `600.0`).
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        Value::Bool(b) => b.to_string(),
        _ => bail!("argument `{id}` has a value the command line cannot spell: {v}"),
    })
}
