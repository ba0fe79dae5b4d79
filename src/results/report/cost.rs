//! The report's cost and energy section: one sentence per user level saying what offload
//! changed in cost per million tokens at equal or better interactivity, and the figures per
//! cell (collect::cost).
//!
//! The comparison takes, at each user count, offload off's cheapest configuration (tp, ep) and
//! an offload-on cell at least as interactive: a cheaper token that a user receives more slowly
//! is not what offload is bought for. Like is compared with like: the offload-on cell is the one
//! of the same configuration where that one is as interactive, else the cheapest that is (and a
//! sentence names a cheaper offload-on configuration when there is one). Two figures whose
//! repeats' 95 % intervals overlap (`collect::repeats`) are equal: noise is neither a gain, a
//! loss, nor a reason to pass a configuration over. A single run's interval is its value.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::base::kinds::Offload;
use crate::base::plot::Chart;
use crate::results::collect::cells::CellResult;
use crate::results::collect::panels::Panel;
use crate::results::collect::repeats::LEVEL;
use crate::results::collect::result::Metric;

/// The cost and energy section of the page.
#[derive(Debug, Serialize)]
pub(crate) struct CostSection {
    /// One per (runner, model, user count) with both modes priced.
    pub(crate) sentences: Vec<String>,
    /// Whether any cell has cost figures.
    pub any: bool,
    /// The runners whose cells have no price or power figures.
    unpriced: Vec<String>,
}

/// Whether `chart` is a cost or energy panel with no point: its runner has no price or power
/// figures (the `cpu` runner), and the page says so instead of drawing an empty chart.
pub(crate) fn unpriced_panel(panel: &Panel, chart: &Chart) -> bool {
    matches!(
        panel.y,
        Metric::UsdPerMtokTotalHyperscaler | Metric::TpsPerMw
    ) && chart.series.iter().all(|s| s.points.is_empty())
}

/// A cell's label in sentences and on chart points: its configuration.
pub(crate) fn config_label(c: &CellResult) -> String {
    match c.config.ep {
        0 => format!("tp {}", c.config.tp),
        ep => format!("tp {} ep {ep}", c.config.tp),
    }
}

fn cost(c: &CellResult) -> Option<f64> {
    Metric::UsdPerMtokTotalHyperscaler
        .of(c)
        .filter(|v| v.is_finite())
}

/// The cheapest of `cells`.
fn cheapest<'a>(cells: impl Iterator<Item = &'a CellResult>) -> Option<&'a CellResult> {
    cells.filter(|c| cost(c).is_some()).min_by(|a, b| {
        cost(a)
            .unwrap_or(f64::MAX)
            .total_cmp(&cost(b).unwrap_or(f64::MAX))
    })
}

/// Dollars to three significant digits: `$1.41`, `$0.145`, `$0.0313`.
fn dollars(v: f64) -> String {
    let digits = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    format!("${v:.digits$}")
}

/// The relative change, signed, with a decimal below 10 %: `-36 %`, `+2.5 %`, `-0.0 %`.
fn change(before: f64, after: f64) -> String {
    let z = (after / before - 1.0) * 100.0;
    if z.abs() < 10.0 {
        format!("{z:+.1} %")
    } else {
        format!("{z:+.0} %")
    }
}

/// `c`'s figure `value` of `metric` as its repeats' interval; a point for a single run.
fn interval(c: &CellResult, metric: Metric, value: f64) -> (f64, f64) {
    match c.spread.get(&metric).and_then(|s| s.half_width(LEVEL)) {
        Some(h) => (value - h, value + h),
        None => (value, value),
    }
}

/// Whether `a` and `b`'s figures of `metric` are equal within their repeats' intervals.
fn within_noise(
    a: &CellResult,
    b: &CellResult,
    metric: Metric,
    get: fn(&CellResult) -> Option<f64>,
) -> bool {
    let (Some(va), Some(vb)) = (get(a), get(b)) else {
        return false;
    };
    let (ia, ib) = (interval(a, metric, va), interval(b, metric, vb));
    ia.0 <= ib.1 && ib.0 <= ia.1
}

/// Whether `c` is at least as interactive as `floor`, counting noise as equal.
fn as_interactive(c: &CellResult, floor: &CellResult) -> bool {
    let get = |c: &CellResult| c.figures.interactivity.filter(|v| v.is_finite());
    get(c).unwrap_or(0.0) >= get(floor).unwrap_or(0.0)
        || within_noise(c, floor, Metric::Interactivity, get)
}

fn same_cost(a: &CellResult, b: &CellResult) -> bool {
    within_noise(a, b, Metric::UsdPerMtokTotalHyperscaler, cost)
}

/// "tp 1, 41.0 tok/s/user".
fn at(c: &CellResult) -> String {
    format!(
        "{}, {:.1} tok/s/user",
        config_label(c),
        c.figures.interactivity.unwrap_or(f64::NAN)
    )
}

/// "At 32 users, offload on changed the cost per million total tokens at equal or better
/// interactivity from $0.520 (tp 1, 41.0 tok/s/user) to $0.230 (tp 1, 55.0 tok/s/user): -56 %."
/// or, within noise, "... left the cost ... unchanged within the repeats' 95 % intervals: ...".
fn sentence(users: u32, subject: &str, cells: &[&CellResult]) -> Option<String> {
    let mode = |m: Offload| cells.iter().copied().filter(move |c| c.config.offload == m);
    let off = cheapest(mode(Offload::Off))?;
    mode(Offload::On).find(|c| cost(c).is_some())?;
    let off_cost = cost(off)?;
    let as_good = || mode(Offload::On).filter(|c| cost(c).is_some() && as_interactive(c, off));
    let Some(cheapest_on) = cheapest(as_good()) else {
        return Some(format!(
            "At {users} users{subject}, no offload-on configuration reached offload off's interactivity ({}): offload off costs {} per million total tokens there.",
            at(off),
            dollars(off_cost)
        ));
    };
    let same_config =
        as_good().find(|c| (c.config.tp, c.config.ep) == (off.config.tp, off.config.ep));
    let on = same_config.unwrap_or(cheapest_on);
    let on_cost = cost(on)?;
    let mut text = if same_cost(off, on) {
        let repeated = [off, on]
            .iter()
            .any(|c| c.spread.contains_key(&Metric::UsdPerMtokTotalHyperscaler));
        let within = if repeated {
            " within the repeats' 95 % intervals"
        } else {
            ""
        };
        format!(
            "At {users} users{subject}, offload on left the cost per million total tokens at equal or better interactivity unchanged{within}: {} off ({}), {} on ({}).",
            dollars(off_cost),
            at(off),
            dollars(on_cost),
            at(on),
        )
    } else {
        format!(
            "At {users} users{subject}, offload on changed the cost per million total tokens at equal or better interactivity from {} ({}) to {} ({}): {}.",
            dollars(off_cost),
            at(off),
            dollars(on_cost),
            at(on),
            change(off_cost, on_cost),
        )
    };
    let cheaper_elsewhere = (cheapest_on.config.tp, cheapest_on.config.ep)
        != (on.config.tp, on.config.ep)
        && !same_cost(on, cheapest_on);
    if cheaper_elsewhere && let Some(c) = cost(cheapest_on) {
        text.push_str(&format!(
            " The cheapest offload-on configuration as interactive, {}, costs {} ({} against offload off).",
            at(cheapest_on),
            dollars(c),
            change(off_cost, c),
        ));
    }
    Some(text)
}

/// The section for `cells`.
pub(crate) fn section(cells: &[CellResult]) -> CostSection {
    let mut groups: BTreeMap<(&str, &str, u32), Vec<&CellResult>> = BTreeMap::new();
    for c in cells {
        groups
            .entry((
                c.config.runner.as_str(),
                c.config.model.as_str(),
                c.config.users,
            ))
            .or_default()
            .push(c);
    }
    let several = {
        let mut keys: Vec<(&str, &str)> = groups.keys().map(|(r, m, _)| (*r, *m)).collect();
        keys.dedup();
        keys.len() > 1
    };
    let sentences = groups
        .iter()
        .filter_map(|((runner, model, users), members)| {
            let subject = if several {
                format!(" with {model} on {runner}")
            } else {
                String::new()
            };
            sentence(*users, &subject, members)
        })
        .collect();
    let mut unpriced: Vec<String> = cells
        .iter()
        .filter(|c| c.cost.is_none())
        .map(|c| c.config.runner.clone())
        .collect();
    unpriced.sort_unstable();
    unpriced.dedup();
    CostSection {
        sentences,
        any: cells.iter().any(|c| c.cost.is_some()),
        unpriced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_keep_three_significant_digits() {
        assert_eq!(dollars(1.41), "$1.41");
        assert_eq!(dollars(0.14489), "$0.145");
        assert_eq!(dollars(0.031_26), "$0.0313");
        assert_eq!(dollars(12.345), "$12.3");
        assert_eq!(change(0.14489, 0.14486), "-0.0 %");
        assert_eq!(change(2.0, 1.0), "-50 %");
    }
}
