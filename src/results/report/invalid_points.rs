//! Invalid cells in the Pareto panels: drawn, in grey, so that a reader sees where they fell,
//! but apart from their offload mode's points and never joined to a frontier.

use plotters::style::RGBColor;

use crate::base::plot::{Mark, Series};
use crate::results::collect::ParetoRow;
use crate::results::collect::cells::CellResult;

/// The grey invalid points are drawn in.
const INVALID_GREY: RGBColor = RGBColor(170, 170, 170);

fn is_invalid(cell: &str, cells: &[&CellResult]) -> bool {
    cells.iter().any(|c| c.name == cell && !c.valid)
}

/// A panel group's rows split into the valid cells' and the invalid cells'.
pub fn split<'a>(
    rows: Vec<&'a ParetoRow>,
    cells: &[&CellResult],
) -> (Vec<&'a ParetoRow>, Vec<&'a ParetoRow>) {
    rows.into_iter().partition(|r| !is_invalid(&r.cell, cells))
}

/// One grey series of the invalid points, labelled with their users and an ✗; none without any.
pub fn series(rows: &[&ParetoRow], cells: &[&CellResult]) -> Option<Series> {
    (!rows.is_empty()).then(|| Series {
        label: "invalid (see the cell table)".into(),
        points: rows.iter().map(|r| (r.x, r.y)).collect(),
        color: INVALID_GREY,
        mark: Mark::Points,
        point_labels: rows
            .iter()
            .map(|r| {
                cells
                    .iter()
                    .find(|c| c.name == r.cell)
                    .map_or_else(String::new, |c| {
                        format!("  {}u ✗{}", c.config.users, c.measured_by.point_label())
                    })
            })
            .collect(),
    })
}
