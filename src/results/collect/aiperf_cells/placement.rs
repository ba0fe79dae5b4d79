//! Where an AIPerf run ran: `--aiperf-cell DIR:runner=R,tp=N,...` parsed ([`Placement`]), and
//! the placement that covers an AIPerf artifact directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result};

use crate::base::kinds::{EngineKind, Offload};

/// Where an AIPerf run ran, which its artifacts do not say: `--aiperf-cell
/// DIR:runner=R,tp=N,offload=on|off|noprefix,engine=vllm|sglang|llama-server|sim`, optionally
/// with `ep=N`, `precision=P`, `name=CELL` and, for the simulator, `speed=X` (its `--speed`,
/// which a replay reads off the server but AIPerf does not record). It places the AIPerf
/// artifact directory `DIR` or any under it.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub dir: PathBuf,
    pub runner: String,
    pub tp: u32,
    pub ep: u32,
    pub offload: Offload,
    pub engine: EngineKind,
    pub precision: Option<String>,
    pub name: Option<String>,
    /// The simulator's speed (`engine=sim` only): collect puts the run's figures into the
    /// modelled hardware's time with it, as it does a replay's (`collect::modelled_time`).
    pub sim_speed: Option<f64>,
}

impl FromStr for Placement {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "DIR:runner=R,tp=N,offload=on|off|noprefix,engine=E[,ep=N,precision=P,name=CELL,speed=X]";
        let (dir, settings) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("`{s}`: expected {usage}"))?;
        if dir.is_empty() {
            return Err(format!("`{s}`: no directory before `:` (expected {usage})"));
        }
        let mut given: HashMap<&str, &str> = HashMap::new();
        for pair in settings.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}` in `{s}`: expected KEY=VALUE"))?;
            if ![
                "runner",
                "tp",
                "ep",
                "offload",
                "engine",
                "precision",
                "name",
                "speed",
            ]
            .contains(&key)
            {
                return Err(format!(
                    "unknown key `{key}` in `{s}` (runner, tp, offload, engine, ep, precision, name, speed)"
                ));
            }
            if given.insert(key, value).is_some() {
                return Err(format!("`{key}` given twice in `{s}`"));
            }
        }
        let need = |key: &str| {
            given.get(key).copied().ok_or_else(|| {
                format!("`{s}` does not say `{key}=`: collect cannot place the AIPerf run without it ({usage})")
            })
        };
        let number = |key: &str, v: &str| {
            v.parse::<u32>()
                .map_err(|e| format!("`{key}={v}` in `{s}`: {e}"))
        };
        let offload = need("offload")?;
        let engine: EngineKind =
            clap::ValueEnum::from_str(need("engine")?, true).map_err(|_| {
                format!(
                    "`engine={}` in `{s}`: not one of vllm, sglang, llama-server, sim",
                    given["engine"]
                )
            })?;
        let sim_speed = match given.get("speed") {
            None => None,
            Some(_) if engine != EngineKind::Sim => {
                return Err(format!(
                    "`speed=` in `{s}`: only the simulator (engine=sim) has a speed"
                ));
            }
            Some(v) => Some(
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x > 0.0)
                    .ok_or_else(|| format!("`speed={v}` in `{s}`: not a positive number"))?,
            ),
        };
        Ok(Placement {
            dir: PathBuf::from(dir),
            runner: need("runner")?.to_owned(),
            tp: number("tp", need("tp")?)?.max(1),
            ep: given.get("ep").map_or(Ok(0), |v| number("ep", v))?,
            offload: clap::ValueEnum::from_str(offload, true).map_err(|_| {
                format!("`offload={offload}` in `{s}`: not one of on, off, noprefix")
            })?,
            engine,
            precision: given.get("precision").map(|p| (*p).to_owned()),
            name: given.get("name").map(|n| (*n).to_owned()),
            sim_speed,
        })
    }
}

/// The placement that covers `dir`: the one naming it or the nearest folder above it.
pub(super) fn placement_for<'a>(dir: &Path, placements: &'a [Placement]) -> Result<&'a Placement> {
    let canonical = |p: &Path| {
        p.canonicalize()
            .with_context(|| format!("cannot resolve {}", p.display()))
    };
    let dir_c = canonical(dir)?;
    let mut best: Option<(&Placement, usize)> = None;
    for p in placements {
        let at = canonical(&p.dir)?;
        if dir_c.starts_with(&at) {
            let depth = at.components().count();
            if best.is_none_or(|(_, d)| depth > d) {
                best = Some((p, depth));
            }
        }
    }
    best.map(|(p, _)| p).ok_or_else(|| {
        anyhow::anyhow!(
            "{}: AIPerf artifacts, but collect cannot place the run (AIPerf does not record the runner, TP, offload mode or engine): give --aiperf-cell {}:runner=R,tp=N,offload=on|off|noprefix,engine=E",
            dir.display(),
            dir.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placement_names_where_the_run_ran_and_refuses_what_is_missing() {
        let p: Placement =
            "/r/aiperf_artifacts:runner=b200,tp=8,offload=noprefix,engine=sglang,ep=8,name=x"
                .parse()
                .expect("parses");
        assert_eq!(p.dir, PathBuf::from("/r/aiperf_artifacts"));
        assert_eq!((p.runner.as_str(), p.tp, p.ep), ("b200", 8, 8));
        assert_eq!(
            (p.offload, p.engine),
            (Offload::Noprefix, EngineKind::Sglang)
        );
        assert_eq!(p.name.as_deref(), Some("x"));
        let e = "d:runner=h200,tp=8,engine=vllm"
            .parse::<Placement>()
            .unwrap_err();
        assert!(e.contains("does not say `offload=`"), "{e}");
        let e = "d:runner=h200,tp=8,offload=on,engine=trt"
            .parse::<Placement>()
            .unwrap_err();
        assert!(
            e.contains("`engine=trt`") && e.contains("vllm, sglang"),
            "{e}"
        );
        let e = "d:runner=h200,tp=8,offload=on,engine=vllm,users=4"
            .parse::<Placement>()
            .unwrap_err();
        assert!(e.contains("unknown key `users`"), "{e}");
        let sim: Placement = "d:runner=cpu,tp=1,offload=off,engine=sim,speed=20"
            .parse()
            .expect("parses");
        assert_eq!((sim.engine, sim.sim_speed), (EngineKind::Sim, Some(20.0)));
        assert_eq!(p.sim_speed, None);
        let e = "d:runner=h200,tp=8,offload=on,engine=vllm,speed=20"
            .parse::<Placement>()
            .unwrap_err();
        assert!(e.contains("only the simulator"), "{e}");
        let e = "d:runner=cpu,tp=1,offload=on,engine=sim,speed=0"
            .parse::<Placement>()
            .unwrap_err();
        assert!(e.contains("`speed=0`") && e.contains("positive"), "{e}");
        assert!("runner=h200".parse::<Placement>().is_err());
    }
}
