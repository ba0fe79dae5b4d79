//! The native cell matrix: the axes (`tp`, `ep`, `users`, `offload`, with `per_tp` overrides)
//! multiplied out per runner, `exclude` and `include` applied, and each cell checked against
//! its runner; apart from the shared settings, with the spec field each cell came from kept
//! for errors.

use super::NativeSpec;
use crate::base::kinds::EngineKind;
use crate::base::runner::RunnerSet;
use crate::base::yaml::{SpecError, YamlDoc};
use crate::plan::spec::{
    Cell, CellFields, Offload, check_not_empty, check_parallelism, check_unique, find_runner,
    parse_tp_key,
};

/// A cell together with the spec fields it came from, for error locations.
pub(super) struct Placed {
    pub(super) cell: Cell,
    runner_field: String,
    tp_field: String,
    ep_field: String,
    offload_field: String,
}

pub(super) fn expand_axes(doc: &YamlDoc, spec: &NativeSpec) -> Result<Vec<Placed>, SpecError> {
    check_not_empty(doc, "tp", &spec.tp)?;
    check_unique(doc, "tp", &spec.tp)?;
    check_not_empty(doc, "users", &spec.users)?;
    check_unique(doc, "users", &spec.users)?;
    let default_offload = vec![Offload::On, Offload::Off];
    let offloads = spec.offload.as_ref().unwrap_or(&default_offload);
    check_not_empty(doc, "offload", offloads)?;
    check_unique(doc, "offload", offloads)?;
    let default_ep = vec![0];
    let eps = spec.ep.as_ref().unwrap_or(&default_ep);
    check_not_empty(doc, "ep", eps)?;
    check_unique(doc, "ep", eps)?;
    for (i, u) in spec.users.iter().enumerate() {
        if *u == 0 {
            return Err(doc.error(&format!("users[{i}]"), "users must be at least 1"));
        }
    }

    for key in spec.per_tp.keys() {
        let field = format!("per_tp.{key}");
        let tp = parse_tp_key(doc, &field, key)?;
        if !spec.tp.contains(&tp) {
            return Err(doc.error(&field, format!("tp {tp} is not in the tp axis")));
        }
    }

    let mut placed = Vec::new();
    for (ri, runner) in spec.runners.iter().enumerate() {
        for (ti, &tp) in spec.tp.iter().enumerate() {
            let key = format!("tp{tp}");
            let over = spec.per_tp.get(&key);
            let base = format!("per_tp.{key}");
            let (users, users_field) = match over.and_then(|o| o.users.as_ref()) {
                Some(u) => (u, format!("{base}.users")),
                None => (&spec.users, "users".to_owned()),
            };
            let (offs, offload_field) = match over.and_then(|o| o.offload.as_ref()) {
                Some(o) => (o, format!("{base}.offload")),
                None => (offloads, "offload".to_owned()),
            };
            let ep_override = over.and_then(|o| o.ep).map(|ep| vec![ep]);
            let (eps_here, ep_field) = match &ep_override {
                Some(e) => (e, format!("{base}.ep")),
                None => (eps, "ep".to_owned()),
            };
            if over.is_some() {
                check_not_empty(doc, &users_field, users)?;
                check_unique(doc, &users_field, users)?;
                check_not_empty(doc, &offload_field, offs)?;
                check_unique(doc, &offload_field, offs)?;
            }
            for (ei, &ep) in eps_here.iter().enumerate() {
                for &u in users {
                    for (oi, &offload) in offs.iter().enumerate() {
                        let cell = Cell {
                            name: cell_name(&spec.name, runner, tp, ep, u, offload),
                            runner: Some(runner.clone()),
                            tp,
                            ep,
                            users: u,
                            offload,
                        };
                        placed.push(Placed {
                            cell,
                            runner_field: format!("runners[{ri}]"),
                            tp_field: if over.is_some() {
                                base.clone()
                            } else {
                                format!("tp[{ti}]")
                            },
                            ep_field: if ep_override.is_some() {
                                ep_field.clone()
                            } else {
                                format!("{ep_field}[{ei}]")
                            },
                            offload_field: format!("{offload_field}[{oi}]"),
                        });
                    }
                }
            }
        }
    }
    Ok(placed)
}

/// The documented native cell name: `{spec}_{runner}_tp{tp}[_ep{ep}]_users{users}_offload{mode}`.
fn cell_name(spec: &str, runner: &str, tp: u32, ep: u32, users: u32, offload: Offload) -> String {
    let ep = if ep > 0 {
        format!("_ep{ep}")
    } else {
        String::new()
    };
    format!("{spec}_{runner}_tp{tp}{ep}_users{users}_offload{offload}")
}

pub(super) fn apply_excludes(
    doc: &YamlDoc,
    spec: &NativeSpec,
    placed: &mut Vec<Placed>,
) -> Result<(), SpecError> {
    for (i, f) in spec.exclude.iter().enumerate() {
        let field = format!("exclude[{i}]");
        if f.runner.is_none()
            && f.tp.is_none()
            && f.ep.is_none()
            && f.users.is_none()
            && f.offload.is_none()
        {
            return Err(doc.error(
                &field,
                "an exclude entry needs at least one of runner, tp, ep, users, offload",
            ));
        }
        let matches = |c: &Cell| {
            f.runner
                .as_ref()
                .is_none_or(|r| c.runner.as_ref() == Some(r))
                && f.tp.is_none_or(|v| c.tp == v)
                && f.ep.is_none_or(|v| c.ep == v)
                && f.users.is_none_or(|v| c.users == v)
                && f.offload.is_none_or(|v| c.offload == v)
        };
        let before = placed.len();
        placed.retain(|p| !matches(&p.cell));
        if placed.len() == before {
            return Err(doc.error(&field, "matches no cell: check it for a typo"));
        }
    }
    Ok(())
}

pub(super) fn add_includes(
    doc: &YamlDoc,
    spec: &NativeSpec,
    placed: &mut Vec<Placed>,
) -> Result<(), SpecError> {
    for (i, extra) in spec.include.iter().enumerate() {
        let field = format!("include[{i}]");
        if extra.users == 0 {
            return Err(doc.error(&format!("{field}.users"), "users must be at least 1"));
        }
        let runners: Vec<&String> = match &extra.runner {
            Some(r) => {
                if !spec.runners.contains(r) {
                    return Err(doc.error(
                        &format!("{field}.runner"),
                        format!(
                            "runner `{r}` is not one of the spec's runners: {}",
                            spec.runners.join(", ")
                        ),
                    ));
                }
                vec![r]
            }
            None => spec.runners.iter().collect(),
        };
        for runner in runners {
            let cell = Cell {
                name: cell_name(
                    &spec.name,
                    runner,
                    extra.tp,
                    extra.ep,
                    extra.users,
                    extra.offload,
                ),
                runner: Some(runner.clone()),
                tp: extra.tp,
                ep: extra.ep,
                users: extra.users,
                offload: extra.offload,
            };
            if placed.iter().any(|p| p.cell.name == cell.name) {
                return Err(doc.error(&field, format!("duplicates cell `{}`", cell.name)));
            }
            placed.push(Placed {
                cell,
                runner_field: if extra.runner.is_some() {
                    format!("{field}.runner")
                } else {
                    field.clone()
                },
                tp_field: format!("{field}.tp"),
                ep_field: format!("{field}.ep"),
                offload_field: format!("{field}.offload"),
            });
        }
    }
    Ok(())
}

pub(super) fn check_cell(
    doc: &YamlDoc,
    spec: &NativeSpec,
    runners: &RunnerSet,
    p: &Placed,
) -> Result<(), SpecError> {
    let cell = &p.cell;
    let runner_name = cell.runner.as_deref().unwrap_or_default();
    let runner = find_runner(doc, runners, runner_name, &p.runner_field)?;
    if let Some(why) = runner.unsupported_reason(spec.engine, cell.offload) {
        return Err(doc.error(
            &p.offload_field,
            format!(
                "runner `{}` cannot run {} with offload `{}`: {why}",
                runner.name, spec.engine, cell.offload
            ),
        ));
    }
    let fields = CellFields {
        tp: &p.tp_field,
        ep: &p.ep_field,
    };
    check_parallelism(doc, cell, Some(runner), &fields)?;
    if !runner.engines.contains_key(&spec.engine) {
        return Err(doc.error(
            "engine",
            format!(
                "runner `{}` cannot start engine `{}`; it defines: {}",
                runner.name,
                spec.engine,
                runner
                    .engines
                    .keys()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if spec.engine == EngineKind::LlamaServer && cell.tp != 1 {
        return Err(doc.error(&p.tp_field, "llama-server runs on one device: tp must be 1"));
    }
    if runner
        .mode_flags(spec.engine, cell.offload, spec.offload_backend)
        .is_none()
    {
        let what = if cell.offload == Offload::On {
            format!("offload `on` with backend `{}`", spec.offload_backend)
        } else {
            format!("offload `{}`", cell.offload)
        };
        return Err(doc.error(
            &p.offload_field,
            format!(
                "runner `{}` defines no {} flags for {what}",
                runner.name, spec.engine
            ),
        ));
    }
    if cell.offload == Offload::On
        && spec.offload_gb.is_none()
        && spec.offload_dram_fraction.is_none()
    {
        return Err(doc.error(
            &p.offload_field,
            "offload `on` needs a host-memory budget: set offload_gb or offload_dram_fraction",
        ));
    }
    Ok(())
}
