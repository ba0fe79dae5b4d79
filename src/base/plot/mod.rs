//! Charts as PNG and SVG (plotters): time series of a cell's server metrics, and the sweep's
//! Pareto panels.
//!
//! Text is drawn with a font compiled into the binary (DejaVu Sans, `assets/fonts/`), so plots
//! look the same on a GPU runner's bare container as on a workstation, with no fontconfig.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

/// The size plots are drawn at: legible on a laptop screen and in a report.
const SIZE: (u32, u32) = (1600, 1000);

static FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");

fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
    });
    ok.then_some(())
        .context("the built-in font could not be loaded")
}

/// An axis tick: short, with as many decimals as its magnitude needs (50k, 2.5, 0.25).
fn tick(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    Line,
    Points,
    LineAndPoints,
}

/// One named series of (x, y) points.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
    pub(crate) mark: Mark,
    /// A label per point, drawn beside it (e.g. the cell's users); empty for none.
    pub(crate) point_labels: Vec<String>,
}

impl Series {
    pub fn line(label: impl Into<String>, points: Vec<(f64, f64)>, color: RGBColor) -> Self {
        Self {
            label: label.into(),
            points,
            color,
            mark: Mark::Line,
            point_labels: Vec::new(),
        }
    }
}

/// A chart: title, axis names and series sharing the axes.
#[derive(Debug, Clone)]
pub(crate) struct Chart {
    pub title: String,
    pub(crate) x_label: String,
    pub(crate) y_label: String,
    pub series: Vec<Series>,
}

/// Colours that stay apart for the usual handful of series (Tableau 10).
pub(crate) const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

impl Chart {
    /// The axis ranges covering every point, padded, with y starting at zero for non-negative
    /// data and headroom above it for the legend.
    fn ranges(&self) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
        let pts = || self.series.iter().flat_map(|s| s.points.iter());
        let headroom = if self.has_legend() { 0.2 } else { 0.05 };
        let span = |vals: Vec<f64>, from_zero: bool, top: f64| {
            let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if !lo.is_finite() || !hi.is_finite() {
                return 0.0..1.0;
            }
            let lo = if from_zero && lo >= 0.0 { 0.0 } else { lo };
            // A single value still gets a visible span around it.
            let span = if hi > lo {
                hi - lo
            } else {
                hi.abs().max(1.0) * 2.0
            };
            let lo = if from_zero && lo == 0.0 {
                0.0
            } else {
                lo - span * 0.05
            };
            lo..hi + span * top
        };
        (
            span(pts().map(|p| p.0).collect(), false, 0.05),
            span(pts().map(|p| p.1).collect(), true, headroom),
        )
    }

    fn has_legend(&self) -> bool {
        self.series.iter().filter(|s| !s.label.is_empty()).count() > 1
    }

    /// Draws the chart to `path`: PNG or SVG by its extension.
    pub fn save(&self, path: &Path) -> Result<()> {
        register_font()?;
        let result = match path.extension().and_then(|e| e.to_str()) {
            Some("svg") => self.draw(SVGBackend::new(path, SIZE).into_drawing_area()),
            _ => self.draw(BitMapBackend::new(path, SIZE).into_drawing_area()),
        };
        result.with_context(|| format!("cannot draw {}", path.display()))
    }

    /// The chart as an SVG document, for inlining into a page.
    pub fn svg(&self) -> Result<String> {
        register_font()?;
        let mut out = String::new();
        self.draw(SVGBackend::with_string(&mut out, SIZE).into_drawing_area())?;
        Ok(out)
    }

    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{e}");
        root.fill(&WHITE).map_err(err)?;
        let (xr, yr) = self.ranges();
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", 36))
            .margin(24)
            .x_label_area_size(70)
            .y_label_area_size(110)
            .build_cartesian_2d(xr, yr)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .axis_desc_style(("sans-serif", 26))
            .label_style(("sans-serif", 22))
            .light_line_style(RGBColor(235, 235, 235))
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .draw()
            .map_err(err)?;
        let mut any_points = false;
        for s in &self.series {
            any_points |= !s.points.is_empty();
            let color = s.color;
            let stroke = color.stroke_width(3);
            if s.mark == Mark::LineAndPoints {
                chart
                    .draw_series(s.points.iter().map(|&p| Circle::new(p, 6, color.filled())))
                    .map_err(err)?;
            }
            let legend_anchor = if s.mark == Mark::Points {
                chart
                    .draw_series(s.points.iter().map(|&p| Circle::new(p, 8, color.filled())))
                    .map_err(err)?
            } else {
                chart
                    .draw_series(LineSeries::new(s.points.iter().copied(), stroke))
                    .map_err(err)?
            };
            if !s.label.is_empty() {
                legend_anchor.label(&s.label).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 30, y)], color.stroke_width(4))
                });
            }
            if !s.point_labels.is_empty() {
                chart
                    .draw_series(s.points.iter().zip(&s.point_labels).map(|(&p, l)| {
                        Text::new(l.clone(), p, ("sans-serif", 20).into_font().color(&BLACK))
                    }))
                    .map_err(err)?;
            }
        }
        if !any_points {
            root.draw_text(
                "no data",
                &("sans-serif", 40)
                    .into_font()
                    .color(&RGBColor(150, 150, 150)),
                (SIZE.0 as i32 / 2 - 70, SIZE.1 as i32 / 2),
            )
            .map_err(err)?;
        }
        if self.has_legend() {
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 24))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
        Ok(())
    }
}
