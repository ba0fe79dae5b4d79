//! The InferenceX agentic-trace sweep config, read as-is.
//!
//! ```yaml
//! b200-fp4-dsr1:
//!   tp4: {users: [2, 4, 8], offload: ["on", "off"], ep: 4}
//!   tp8: {users: [8, 16]}
//! ```
//! Entry selection and cell order follow the InferenceX workflow's matrix generator: the entry named
//! by `--key`; else the only entry; else the file itself when all its keys start with `tp`; else an
//! error listing the keys. Cells go in tp-key order, then users, then offload; `offload` defaults
//! to `[on, off]` and `ep` is set only when > 0. One deliberate difference: a file holding a single
//! `tpN` key is read as a tp map (the workflow's script would fail on it).

use indexmap::IndexMap;
use serde::Deserialize;

use super::options;
use super::{
    Cell, CellFields, DEFAULT_DURATION_S, LoadOptions, Offload, OffloadBackend, Settings, Shape,
    Sweep, check_not_empty, check_parallelism, check_unique, find_runner, parse_tp_key,
};
use crate::base::kinds::EngineKind;
use crate::base::yaml::{SpecError, YamlDoc};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TpEntry {
    #[serde(default)]
    users: Vec<u32>,
    offload: Option<Vec<Offload>>,
    #[serde(default)]
    ep: u32,
}

type TpMap = IndexMap<String, TpEntry>;

pub(super) fn load(
    doc: &YamlDoc,
    keys: &[String],
    opts: LoadOptions<'_>,
) -> Result<Sweep, SpecError> {
    let all_tp = keys.iter().all(|k| k.starts_with("tp"));
    let listing = || keys.join(", ");
    let entry: Option<String> = match opts.key {
        Some(key) if keys.iter().any(|k| k == key) => Some(key.to_owned()),
        Some(key) => {
            return Err(doc.error(
                "",
                format!("config key `{key}` not found; available: {}", listing()),
            ));
        }
        None if all_tp => None,
        None if keys.len() == 1 => Some(keys[0].clone()),
        None => {
            return Err(doc.error(
                "",
                format!(
                    "the spec has several entries; choose one with --key. Available: {}",
                    listing()
                ),
            ));
        }
    };

    let (tps, prefix): (TpMap, String) = match &entry {
        None => (doc.parse()?, String::new()),
        Some(key) => {
            let mut entries: IndexMap<String, TpMap> = doc.parse()?;
            let tps = entries.shift_remove(key).unwrap_or_default();
            (tps, format!("{key}."))
        }
    };
    let entry_field = entry.clone().unwrap_or_default();
    if tps.is_empty() {
        return Err(doc.error(&entry_field, "the entry has no tpN keys"));
    }

    let runner = opts
        .runner
        .map(|name| {
            opts.runners.get(name).ok_or_else(|| {
                // The runner comes from the command line, so the spec has no place to point at.
                let mut e = find_runner(doc, opts.runners, name, "").unwrap_err();
                e.line = 0;
                e.message = format!("{} (from --runner)", e.message);
                e
            })
        })
        .transpose()?;

    let mut cells = Vec::new();
    let mut seen_tp: Vec<u32> = Vec::new();
    for (key, settings) in &tps {
        let field = format!("{prefix}{key}");
        let tp = parse_tp_key(doc, &field, key)?;
        if seen_tp.contains(&tp) {
            return Err(doc.error(&field, format!("tp {tp} appears twice")));
        }
        seen_tp.push(tp);
        let users_field = format!("{field}.users");
        check_not_empty(doc, &users_field, &settings.users)?;
        check_unique(doc, &users_field, &settings.users)?;
        let offload_field = format!("{field}.offload");
        let offloads = settings
            .offload
            .clone()
            .unwrap_or_else(|| vec![Offload::On, Offload::Off]);
        check_not_empty(doc, &offload_field, &offloads)?;
        check_unique(doc, &offload_field, &offloads)?;
        for (i, &users) in settings.users.iter().enumerate() {
            if users == 0 {
                return Err(doc.error(&format!("{users_field}[{i}]"), "users must be at least 1"));
            }
            for &offload in &offloads {
                let cell = Cell {
                    name: format!("multiturn_tp{tp}_users{users}_offload{offload}"),
                    runner: runner.map(|r| r.name.clone()),
                    tp,
                    ep: settings.ep,
                    users,
                    offload,
                };
                let fields = CellFields {
                    tp: &field,
                    ep: &format!("{field}.ep"),
                };
                check_parallelism(doc, &cell, runner, &fields)?;
                cells.push(cell);
            }
        }
    }

    let matrix_loc = doc.locate(&entry_field);
    Ok(Sweep {
        path: doc.path().to_path_buf(),
        shape: Shape::InferenceX {
            entry: entry.clone(),
        },
        settings: Settings {
            name: entry.unwrap_or_else(|| "multiturn".to_owned()),
            model: None,
            engine: EngineKind::Vllm,
            image: None,
            precision: None,
            duration_s: DEFAULT_DURATION_S,
            traces: None,
            missing_traces_hint: None,
            workload: options::replay(doc, &IndexMap::new())?,
            engine_args: Vec::new(),
            recipe: None,
            tp_recipes: Vec::new(),
            offload_budget: None,
            offload_backend: OffloadBackend::Native,
            validity: crate::base::validity::ValidityThresholds::default(),
            repeats: 1,
            economics: None,
        },
        cells,
        matrix_field: entry_field,
        matrix_location: (matrix_loc.line, matrix_loc.column),
    })
}
