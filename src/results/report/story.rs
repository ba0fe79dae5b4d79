//! What report.html says first: the offload story in one sentence computed from the cells, and
//! how much faster than real time a simulated sweep ran (and that its figures are the modelled
//! hardware's nonetheless).
//!
//! The sentence compares offload on with offload off at the highest user count where both ran at
//! the same tp (and ep): that is where the working set presses hardest on HBM, so it is where a
//! host tier should show. When several tps ran both, the sentence averages over them (each tp's
//! cell counts once) and a line per tp follows it.

use std::collections::BTreeMap;

use serde::Serialize;

use anyhow::Result;

use crate::base::kinds::Offload;
use crate::data::artifact::schema::{JsonArtifact, Metadata};
use crate::results::collect::cells::CellResult;

/// One tp's offload-on and offload-off cells at the story's user count.
#[derive(Debug, Clone)]
struct Pair {
    tp: u32,
    ep: u32,
    hit_off: Option<f64>,
    hit_on: Option<f64>,
    tps_off: f64,
    tps_on: f64,
}

impl Pair {
    fn label(&self) -> String {
        match self.ep {
            0 => format!("tp {}", self.tp),
            ep => format!("tp {} ep {ep}", self.tp),
        }
    }

    /// `tp 1: hit rate 40.0 % → 90.0 %, total tok/s/GPU 1,000 → 1,500 (+50 %)`.
    fn line(&self) -> String {
        let hits = match (self.hit_off, self.hit_on) {
            (Some(off), Some(on)) => format!("hit rate {} → {}, ", percent(off), percent(on)),
            _ => String::new(),
        };
        format!(
            "{}: {hits}total tok/s/GPU {} → {}{}",
            self.label(),
            thousands(self.tps_off),
            thousands(self.tps_on),
            change(self.tps_off, self.tps_on).map_or_else(String::new, |c| format!(" ({c})")),
        )
    }
}

/// Offload on against off at the highest user count that ran both, for one model on one runner.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OffloadStory {
    /// The opening sentence.
    pub sentence: String,
    /// One line per tp, when the sentence averages several.
    pub details: Vec<String>,
}

/// The offload story of each model and runner whose cells ran offload on and off at some user
/// count (a collect may gather several sweeps); the sentences name them when there are several.
pub(crate) fn offload_stories(cells: &[CellResult]) -> Vec<OffloadStory> {
    let mut groups: BTreeMap<(&str, &str), Vec<&CellResult>> = BTreeMap::new();
    for c in cells {
        groups
            .entry((c.config.model.as_str(), c.config.runner.as_str()))
            .or_default()
            .push(c);
    }
    let several = groups.len() > 1;
    groups
        .into_iter()
        .filter_map(|((model, runner), members)| {
            let subject = several.then(|| format!(" with {model} on {runner}"));
            story(&members, subject.as_deref().unwrap_or_default())
        })
        .collect()
}

/// `subject` follows the user count in the sentence: empty, or " with MODEL on RUNNER".
fn story(cells: &[&CellResult], subject: &str) -> Option<OffloadStory> {
    let find = |tp: u32, ep: u32, users: u32, offload: Offload| {
        cells.iter().find(|c| {
            c.config.tp == tp
                && c.config.ep == ep
                && c.config.users == users
                && c.config.offload == offload
        })
    };
    let pairs_at = |users: u32| -> Vec<Pair> {
        let mut pairs: Vec<Pair> = cells
            .iter()
            .filter(|c| c.config.users == users && c.config.offload == Offload::On)
            .filter_map(|on| {
                let off = find(on.config.tp, on.config.ep, users, Offload::Off)?;
                Some(Pair {
                    tp: on.config.tp,
                    ep: on.config.ep,
                    hit_off: off.figures.client_hit_rate,
                    hit_on: on.figures.client_hit_rate,
                    tps_off: off.figures.total_tps_per_gpu,
                    tps_on: on.figures.total_tps_per_gpu,
                })
            })
            .collect();
        pairs.sort_by_key(|p| (p.tp, p.ep));
        // A cell collected twice (its folder and its zip) counts once.
        pairs.dedup_by_key(|p| (p.tp, p.ep));
        pairs
    };
    let users = cells
        .iter()
        .map(|c| c.config.users)
        .filter(|&u| !pairs_at(u).is_empty())
        .max()?;
    let pairs = pairs_at(users);
    let details = if pairs.len() > 1 {
        pairs.iter().map(Pair::line).collect()
    } else {
        Vec::new()
    };
    Some(OffloadStory {
        sentence: sentence(users, subject, &pairs),
        details,
    })
}

/// "At 32 users (tp 1 and 2, averaged), offload on changed the hit rate from 40.0 % to 90.0 %
/// and total tok/s/GPU by +50 %."
fn sentence(users: u32, subject: &str, pairs: &[Pair]) -> String {
    let n = pairs.len() as f64;
    let tps_off = pairs.iter().map(|p| p.tps_off).sum::<f64>() / n;
    let tps_on = pairs.iter().map(|p| p.tps_on).sum::<f64>() / n;
    let hits: Vec<(f64, f64)> = pairs
        .iter()
        .filter_map(|p| Some((p.hit_off?, p.hit_on?)))
        .collect();
    let scope = match pairs {
        [one] => one.label(),
        _ => format!("{}, averaged", list(pairs)),
    };
    let tps = match change(tps_off, tps_on) {
        Some(c) => format!("total tok/s/GPU by {c}"),
        None => format!(
            "total tok/s/GPU from {} to {}",
            thousands(tps_off),
            thousands(tps_on)
        ),
    };
    if hits.is_empty() {
        return format!("At {users} users{subject} ({scope}), offload on changed {tps}.");
    }
    let m = hits.len() as f64;
    let hit_off = hits.iter().map(|h| h.0).sum::<f64>() / m;
    let hit_on = hits.iter().map(|h| h.1).sum::<f64>() / m;
    format!(
        "At {users} users{subject} ({scope}), offload on changed the hit rate from {} to {} and {tps}.",
        percent(hit_off),
        percent(hit_on),
    )
}

/// "tp 1 and 2", "tp 1, 2 and 4"; with expert parallelism, "tp 8 ep 8 and tp 8".
fn list(pairs: &[Pair]) -> String {
    let (prefix, labels): (&str, Vec<String>) = if pairs.iter().all(|p| p.ep == 0) {
        ("tp ", pairs.iter().map(|p| p.tp.to_string()).collect())
    } else {
        ("", pairs.iter().map(Pair::label).collect())
    };
    match labels.split_last() {
        Some((last, [])) => format!("{prefix}{last}"),
        Some((last, rest)) => format!("{prefix}{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

fn percent(share: f64) -> String {
    format!("{:.1} %", share * 100.0)
}

/// The relative change from `before` to `after`, signed: `+50 %`, `-4.2 %`; `None` from zero.
fn change(before: f64, after: f64) -> Option<String> {
    if !(before > 0.0 && after.is_finite()) {
        return None;
    }
    let z = (after / before - 1.0) * 100.0;
    Some(if z.abs() < 10.0 {
        format!("{z:+.1} %")
    } else {
        format!("{z:+.0} %")
    })
}

/// A rate rounded to a whole number, with thousands separators: `12,345`.
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// How the simulated cells' clock related to real time: the simulator's speed (`sim_speed`,
/// which collect read from each cell's `metadata.json` and turned its figures into the modelled
/// hardware's time with) and the replay's `time_scale` (`metadata.json`).
#[derive(Debug, Default)]
pub(crate) struct SimClock {
    /// Distinct speeds, ascending; empty when no cell recorded one.
    speeds: Vec<f64>,
    /// Distinct time scales of the replays, ascending.
    time_scales: Vec<f64>,
}

impl SimClock {
    pub fn read(cells: &[CellResult]) -> Result<Self> {
        let mut clock = Self::default();
        for c in cells.iter().filter(|c| c.simulated) {
            clock.speeds.extend(c.sim_speed);
            if !c.dir.join(Metadata::FILE).exists() {
                continue;
            }
            let meta = Metadata::read(&c.dir)?;
            clock
                .time_scales
                .extend(Some(meta.time_scale).filter(|t| t.is_finite()));
        }
        for v in [&mut clock.speeds, &mut clock.time_scales] {
            v.sort_by(f64::total_cmp);
            v.dedup();
        }
        Ok(clock)
    }

    /// What the report says about simulated time, or `None` when no cell recorded its speed.
    pub(crate) fn note(&self) -> Option<String> {
        let (&slow, &fast) = (self.speeds.first()?, self.speeds.last()?);
        if slow == 1.0 && fast == 1.0 {
            return Some("The simulator ran in real time.".into());
        }
        let times = if slow == fast {
            format!("{fast}")
        } else {
            format!("{slow} to {fast}")
        };
        let ran = if slow >= 1.0 {
            format!("ran {times}× faster than real time")
        } else {
            format!("ran at {times}× real time")
        };
        let waits = match self.time_scales.as_slice() {
            [t] => format!(" The replay scaled the think times of the traces by {t}."),
            _ => String::new(),
        };
        let factor = if slow == fast {
            times.clone()
        } else {
            format!("each cell's speed ({times})")
        };
        Some(format!(
            "The simulator {ran}: each second of a cell modelled {times} s of serving.{waits} \
             Every figure here is the modelled hardware's, in its time: the tok/s measured in wall-clock time were divided by {factor} and the latencies multiplied by it, \
             so rates, latencies, cost and energy describe one machine (summary.csv keeps the speed, sim_speed; the cells' own files stay in wall-clock time)."
        ))
    }
}
