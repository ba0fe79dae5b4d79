//! The report's cost and energy section: one sentence per user level saying what offload
//! changed in cost per million tokens at equal or better interactivity, and the figures per
//! cell (collect::cost).
//!
//! The comparison takes, at each user count, offload off's cheapest configuration (tp, ep) and
//! the cheapest offload-on one that is at least as interactive: a cheaper token that a user
//! receives more slowly is not what offload is bought for.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::collect::cells::CellResult;
use crate::pareto::Panel;
use crate::plot::Chart;

/// The cost and energy section of the page.
#[derive(Debug, Serialize)]
pub struct CostSection {
    /// One per (runner, model, user count) with both modes priced.
    pub sentences: Vec<String>,
    /// Whether any cell has cost figures.
    pub any: bool,
    /// The runners whose cells have no price or power figures.
    pub unpriced: Vec<String>,
}

/// Whether `chart` is a cost or energy panel with no point: its runner has no price or power
/// figures (the `cpu` runner), and the page says so instead of drawing an empty chart.
pub fn unpriced_panel(panel: &Panel, chart: &Chart) -> bool {
    matches!(
        panel.y_column,
        "usd_per_mtok_total_hyperscaler" | "tps_per_mw"
    ) && chart.series.iter().all(|s| s.points.is_empty())
}

/// A cell's label in sentences and on chart points: its configuration.
pub fn config_label(c: &CellResult) -> String {
    match c.ep {
        0 => format!("tp {}", c.tp),
        ep => format!("tp {} ep {ep}", c.tp),
    }
}

fn cost(c: &CellResult) -> Option<f64> {
    c.usd_per_mtok_total_hyperscaler.filter(|v| v.is_finite())
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

/// "At 32 users, offload on changed the cost per million total tokens at equal or better
/// interactivity from $0.520 (tp 1, 41.0 tok/s/user) to $0.230 (tp 2, 55.0 tok/s/user): -56 %."
fn sentence(users: u32, subject: &str, cells: &[&CellResult]) -> Option<String> {
    let mode = |m: &'static str| cells.iter().copied().filter(move |c| c.offload == m);
    let off = cheapest(mode("off"))?;
    mode("on").find(|c| cost(c).is_some())?;
    let off_cost = cost(off)?;
    let floor = off.interactivity.unwrap_or(0.0);
    let at = |c: &CellResult| {
        format!(
            "{}, {:.1} tok/s/user",
            config_label(c),
            c.interactivity.unwrap_or(f64::NAN)
        )
    };
    let Some(on) = cheapest(mode("on").filter(|c| c.interactivity.unwrap_or(0.0) >= floor)) else {
        return Some(format!(
            "At {users} users{subject}, no offload-on configuration reached offload off's interactivity ({}): offload off costs {} per million total tokens there.",
            at(off),
            dollars(off_cost)
        ));
    };
    let on_cost = cost(on)?;
    Some(format!(
        "At {users} users{subject}, offload on changed the cost per million total tokens at equal or better interactivity from {} ({}) to {} ({}): {}.",
        dollars(off_cost),
        at(off),
        dollars(on_cost),
        at(on),
        change(off_cost, on_cost),
    ))
}

/// The section for `cells`.
pub fn section(cells: &[CellResult]) -> CostSection {
    let mut groups: BTreeMap<(&str, &str, u32), Vec<&CellResult>> = BTreeMap::new();
    for c in cells {
        groups
            .entry((c.runner.as_str(), c.model.as_str(), c.users))
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
        .filter(|c| c.priced_as.is_none())
        .map(|c| c.runner.clone())
        .collect();
    unpriced.sort_unstable();
    unpriced.dedup();
    CostSection {
        sentences,
        any: cells.iter().any(|c| c.priced_as.is_some()),
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
