//! The ROC curves of `ldl openset` as SVG (plotters).

use super::{metrics, MethodResult};
use crate::plot::{e, COLOURS};
use anyhow::Result;
use plotters::prelude::*;
use std::path::Path;

/// The mean ROC curve (TPR over trials at each FPR of [`metrics::fpr_grid`]) of every method
/// and score, one line each with its mean AUROC in the legend, the chance diagonal, and a
/// vertical mark at the operating point's FPR.
pub fn roc(path: &Path, title: &str, results: &[MethodResult], fpr: f64) -> Result<()> {
    let root = SVGBackend::new(path, (900, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0f64..1.0, 0.0f64..1.0)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("false-positive rate (known samples called unknown)")
        .y_desc("true-positive rate (unknown samples caught)")
        .draw()
        .map_err(e)?;
    let grey = RGBColor(190, 190, 190);
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], grey.stroke_width(1)))
        .map_err(e)?;
    chart
        .draw_series(LineSeries::new([(fpr, 0.0), (fpr, 1.0)], grey.stroke_width(1)))
        .map_err(e)?;
    let grid = metrics::fpr_grid();
    let one_method = results.len() == 1;
    let mut i = 0;
    for r in results {
        for s in &r.scores {
            let col = COLOURS[i % COLOURS.len()];
            i += 1;
            let label = if one_method {
                format!("{} (AUROC {:.3})", s.score, s.auroc.mean)
            } else {
                format!("{} {} (AUROC {:.3})", r.method, s.score, s.auroc.mean)
            };
            chart
                .draw_series(LineSeries::new(
                    grid.iter().copied().zip(s.roc_tpr.iter().copied()),
                    col.stroke_width(2),
                ))
                .map_err(e)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}
