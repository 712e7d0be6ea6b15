//! Plots of the experiments (SVG, plotters).

use crate::experiment::mean_ci95;
use crate::experiment::Cell;
use crate::paper::{paper, PAPER_SHOTS};
use anyhow::{anyhow, Result};
use plotters::prelude::*;
use std::path::Path;

/// The line colours of every plot (matplotlib's tab10 without cyan).
pub(crate) const COLOURS: [RGBColor; 9] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
];

/// A plotters error as an anyhow one.
pub(crate) fn e<E: std::fmt::Debug>(err: E) -> anyhow::Error {
    anyhow!("plot: {err:?}")
}

/// Mean accuracy (with 95% intervals) against shots, log x axis; the paper's figures as
/// hollow markers of the same colour.
pub fn accuracy_vs_shots(path: &Path, cells: &[Cell], methods: &[String]) -> Result<()> {
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let max_shots = cells.iter().map(|c| c.shots).max().unwrap_or(200).max(2) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption("MNIST 10-way: accuracy against shots", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((0.8f64..max_shots * 1.25).log_scale(), 0.0f64..1.0)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("shots per class")
        .y_desc("accuracy")
        .draw()
        .map_err(e)?;
    for (i, m) in methods.iter().enumerate() {
        let col = COLOURS[i % COLOURS.len()];
        let pts: Vec<(f64, Vec<f64>)> = cells
            .iter()
            .filter(|c| &c.method == m)
            .map(|c| (c.shots as f64, c.trials.iter().map(|t| t.accuracy).collect()))
            .collect();
        draw_means(&mut chart, m, col, &pts)?;
        if let Some(pub_) = paper(m) {
            let pp: Vec<(f64, f64)> = PAPER_SHOTS
                .iter()
                .zip(pub_)
                .filter(|(s, _)| **s as f64 <= max_shots)
                .filter_map(|(s, v)| v.map(|v| (*s as f64, v)))
                .collect();
            chart
                .draw_series(pp.iter().map(|p| Circle::new(*p, 5, col.stroke_width(2))))
                .map_err(e)?;
        }
    }
    finish(chart)?;
    root.present().map_err(e)?;
    Ok(())
}

/// Mean accuracy after each epoch (gradient methods at 10 shots), as the paper's figure.
pub fn accuracy_vs_epoch(path: &Path, epochs: &[(String, Vec<Vec<f64>>)]) -> Result<()> {
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let max_e = epochs.iter().flat_map(|(_, r)| r.iter().map(|v| v.len())).max().unwrap_or(1).max(2);
    let lowest = epochs.iter().flat_map(|(_, r)| r.iter().flatten().copied()).fold(1.0f64, f64::min);
    let y0 = ((lowest - 0.05) * 10.0).floor().clamp(0.0, 9.0) / 10.0;
    let mut chart = ChartBuilder::on(&root)
        .caption("MNIST 10-way 10-shot: accuracy against epoch", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.5f64..max_e as f64 + 0.5, y0..1.0)
        .map_err(e)?;
    chart.configure_mesh().x_desc("epoch").y_desc("accuracy").draw().map_err(e)?;
    for (i, (m, runs)) in epochs.iter().enumerate() {
        let col = COLOURS[i % COLOURS.len()];
        let ne = runs.iter().map(|r| r.len()).min().unwrap_or(0);
        let pts: Vec<(f64, Vec<f64>)> = (0..ne).map(|ep| ((ep + 1) as f64, runs.iter().map(|r| r[ep]).collect())).collect();
        draw_means(&mut chart, m, col, &pts)?;
    }
    finish(chart)?;
    root.present().map_err(e)?;
    Ok(())
}

type Chart<'a, X> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, plotters::coord::types::RangedCoordf64>>;

/// One method's line: the mean of each point's values, with its 95% interval as error bars,
/// and a legend entry.
fn draw_means<X>(chart: &mut Chart<'_, X>, name: &str, col: RGBColor, pts: &[(f64, Vec<f64>)]) -> Result<()>
where
    X: Ranged<ValueType = f64>,
{
    let pts: Vec<(f64, f64, f64)> = pts
        .iter()
        .map(|(x, v)| {
            let (mean, ci) = mean_ci95(v);
            (*x, mean, if ci.is_finite() { ci } else { 0.0 })
        })
        .collect();
    chart
        .draw_series(LineSeries::new(pts.iter().map(|p| (p.0, p.1)), col.stroke_width(2)))
        .map_err(e)?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
    chart
        .draw_series(
            pts.iter()
                .map(|p| ErrorBar::new_vertical(p.0, p.1 - p.2, p.1, p.1 + p.2, col.filled(), 6)),
        )
        .map_err(e)?;
    Ok(())
}

/// The legend, bottom right.
fn finish<X>(mut chart: Chart<'_, X>) -> Result<()>
where
    X: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    Ok(())
}
