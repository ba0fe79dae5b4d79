//! The 95 % intervals of repeated cells in the Pareto panels: a bar along each axis through the
//! point, drawn as short line series in the point's colour.

use plotters::style::RGBColor;

use crate::base::plot::Series;
use crate::results::collect::ParetoRow;
use crate::results::collect::cells::CellResult;
use crate::results::collect::panels::Panel;
use crate::results::collect::repeats::LEVEL;
use crate::results::collect::result::Metric;

/// The interval bars of `rows`' cells on `panel`: none for a cell run once.
pub(crate) fn bars(
    panel: &Panel,
    rows: &[&ParetoRow],
    cells: &[&CellResult],
    color: RGBColor,
) -> Vec<Series> {
    let mut out = Vec::new();
    for r in rows {
        let Some(cell) = cells.iter().find(|c| c.name == r.cell) else {
            continue;
        };
        let half = |metric: Metric| cell.spread.get(&metric).and_then(|s| s.half_width(LEVEL));
        if let Some(h) = half(panel.y) {
            out.push(Series::line(
                "",
                vec![(r.x, r.y - h), (r.x, r.y + h)],
                color,
            ));
        }
        if let Some(h) = half(panel.x) {
            out.push(Series::line(
                "",
                vec![(r.x - h, r.y), (r.x + h, r.y)],
                color,
            ));
        }
    }
    out
}
