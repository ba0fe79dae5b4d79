//! A workload's arguments from a map of option names to values (a spec's `replay:` or
//! `tester:`), deserialized straight into the typed arguments over the defaults their flags
//! declare: no command line is spelt out and parsed on the way.
//!
//! Each option is checked on its own first, so that an unknown name or a value of the wrong type
//! is reported at that option (the spec then points at its line and column). The serde form of
//! the arguments flattens the same groups their flags do (`#[serde(flatten)]` beside
//! `#[command(flatten)]`), which is why unknown names are refused here, by the arguments' own
//! field names, rather than by `#[serde(deny_unknown_fields)]`, which serde does not support
//! together with `flatten`.

use std::collections::BTreeSet;

use clap::{Args, Command, FromArgMatches};
use indexmap::IndexMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Why a map of options does not make the arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OptionError {
    /// The option as the map spells it; `None` when the map as a whole is wrong.
    pub key: Option<String>,
    pub message: String,
}

impl OptionError {
    fn at(key: &str, message: impl Into<String>) -> Self {
        OptionError {
            key: Some(key.to_owned()),
            message: message.into(),
        }
    }
}

/// The field name an option names: `max-users` and `max_users` are both `max_users`.
pub(crate) fn field_name(key: &str) -> String {
    key.replace('-', "_")
}

/// The arguments `T` with `options` set and every other field at its flag's default. Options
/// whose flag is required must be in `options`; names in `reserved` are refused (the caller
/// sets them itself).
pub(crate) fn from_options<T>(
    options: &IndexMap<String, Value>,
    reserved: &[&str],
) -> Result<T, OptionError>
where
    T: Args + FromArgMatches + Serialize + DeserializeOwned,
{
    let defaults = Defaults::of::<T>().map_err(|message| OptionError { key: None, message })?;
    for (key, value) in options {
        let field = field_name(key);
        if reserved.contains(&field.as_str()) {
            return Err(OptionError::at(
                key,
                format!("`{key}` is set by the cell itself; use the spec's own fields instead"),
            ));
        }
        if !defaults.values.contains_key(&field) {
            let hint = match closest(&field, defaults.values.keys()) {
                Some(near) => format!(" (did you mean `{near}`?)"),
                None => String::new(),
            };
            return Err(OptionError::at(
                key,
                format!("unknown option `{key}`{hint}"),
            ));
        }
        // The option alone over the defaults: a wrong value is found at its own key.
        let mut one = defaults.values.clone();
        one.insert(field, value.clone());
        if let Err(e) = serde_json::from_value::<T>(Value::Object(one)) {
            return Err(OptionError::at(key, e.to_string()));
        }
    }
    let given: BTreeSet<String> = options.keys().map(|k| field_name(k)).collect();
    if let Some(missing) = defaults
        .required
        .iter()
        .find(|f| !given.contains(*f) && !reserved.contains(&f.as_str()))
    {
        return Err(OptionError {
            key: None,
            message: format!("missing option `{missing}`"),
        });
    }
    let mut all = defaults.values;
    for (key, value) in options {
        all.insert(field_name(key), value.clone());
    }
    serde_json::from_value(Value::Object(all)).map_err(|e| OptionError {
        key: None,
        message: e.to_string(),
    })
}

/// The known name nearest `name`, when it is a slip of a letter or two away.
fn closest<'a>(name: &str, known: impl Iterator<Item = &'a String>) -> Option<&'a String> {
    known
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance: letters inserted, deleted or replaced to turn `a` into `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let replaced = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = replaced.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// The defaults `T`'s flags declare, by field name, and which flags are required.
struct Defaults {
    /// Every field of `T`; a required flag's value is a placeholder the caller must replace.
    values: Map<String, Value>,
    required: Vec<String>,
}

impl Defaults {
    /// `T` as clap builds it from an empty command line. A required flag has no default, so
    /// it gets a placeholder (`0`, which every required flag's type reads) just so clap can
    /// build the struct; [`from_options`] insists that the options give it.
    fn of<T: Args + FromArgMatches + Serialize>() -> Result<Self, String> {
        let mut required = Vec::new();
        let command = T::augment_args(Command::new("defaults")).mut_args(|a| {
            if a.is_required_set() {
                required.push(a.get_id().to_string());
                a.required(false).default_value("0")
            } else {
                a
            }
        });
        let matches = command
            .try_get_matches_from(["defaults"])
            .map_err(|e| format!("the flags' defaults do not parse: {e}"))?;
        let args =
            T::from_arg_matches(&matches).map_err(|e| format!("the flags' defaults: {e}"))?;
        match serde_json::to_value(args) {
            Ok(Value::Object(values)) => Ok(Defaults { values, required }),
            Ok(other) => Err(format!("the arguments serialize as {other}, not a map")),
            Err(e) => Err(format!("cannot serialize the arguments: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::workload::replay::ReplayArgs;
    use crate::base::workload::tester::CacheRateArgs;

    fn options(pairs: &[(&str, Value)]) -> IndexMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn unset_options_take_the_flags_defaults() {
        let a: ReplayArgs = from_options(
            &options(&[("max_users", 8.into()), ("warm-prefix-pct", 0.5.into())]),
            &["traces", "out"],
        )
        .expect("options");
        let flags =
            crate::base::workload::replay::parse(&["--max-users", "8", "--warm-prefix-pct", "0.5"])
                .expect("parses");
        // The same arguments as the flags give, less the required ones (placeholders here).
        assert_eq!(
            ReplayArgs {
                traces: flags.traces.clone(),
                out: flags.out.clone(),
                ..a
            },
            flags
        );
    }

    #[test]
    fn a_wrong_option_is_named() {
        let err = from_options::<ReplayArgs>(&options(&[("max_userz", 4.into())]), &[])
            .expect_err("unknown");
        assert_eq!(err.key.as_deref(), Some("max_userz"));
        assert_eq!(
            err.message,
            "unknown option `max_userz` (did you mean `max_users`?)"
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        let err = from_options::<ReplayArgs>(
            &options(&[("seed", 1.into()), ("max_users", "lots".into())]),
            &[],
        )
        .expect_err("a string for a number");
        assert_eq!(err.key.as_deref(), Some("max_users"));
        assert!(err.message.contains("lots"), "{}", err.message);
        let err = from_options::<ReplayArgs>(&options(&[("users", 4.into())]), &["users"])
            .expect_err("reserved");
        assert!(err.message.contains("set by the cell"), "{}", err.message);
    }

    #[test]
    fn a_required_option_must_be_given() {
        let err = from_options::<CacheRateArgs>(
            &options(&[("context_sizes", serde_json::json!([4000]))]),
            &["output_dir"],
        )
        .expect_err("no working set");
        assert_eq!(err.message, "missing option `working_set_size`");
        let a: CacheRateArgs = from_options(
            &options(&[
                ("context_sizes", serde_json::json!([4000])),
                ("working_set_size", 80_000.into()),
            ]),
            &["output_dir"],
        )
        .expect("options");
        assert_eq!((a.context_sizes, a.working_set_size), (vec![4000], 80_000));
        assert_eq!(a.cache_hit_rates.len(), 21, "the flag's default");
    }
}
