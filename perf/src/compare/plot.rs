//! SVG plots of latency distributions (plotters): latency against percentile on the usual
//! HdrHistogram axis, where each step right is ten times rarer (90%, 99%, 99.9% …).

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

/// Percentiles past this (99.999%) are drawn at it: the axis has to end somewhere.
const NINES_MAX: f64 = 5.0;

/// `percentile` as "number of nines": 0 → 0, 90 → 1, 99 → 2, 99.9 → 3, 100 → [`NINES_MAX`].
fn nines(percentile: f64) -> f64 {
    let rest = 1.0 - percentile / 100.0;
    if rest <= 0.0 {
        NINES_MAX
    } else {
        (-rest.log10()).clamp(0.0, NINES_MAX)
    }
}

/// Writes one plot: a line per `(broker, [(percentile, µs)])`, latency on a log axis.
pub fn latency_svg(
    path: &Path,
    title: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> anyhow::Result<()> {
    let (low, high) = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|&(_, micros)| micros))
        .filter(|micros| *micros > 0.0)
        .fold((f64::MAX, 0.0_f64), |(low, high), micros| (low.min(micros), high.max(micros)));
    if high <= 0.0 {
        return Err(anyhow!("no latency to plot for {title}"));
    }
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    let draw = |error: &dyn std::fmt::Display| anyhow!("drawing {}: {error}", path.display());
    root.fill(&WHITE).map_err(|error| draw(&error))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title}: delivery latency"), ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..NINES_MAX, ((low * 0.8).max(1.0)..high * 1.25).log_scale())
        .map_err(|error| draw(&error))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .x_labels(6)
        .x_label_formatter(&|nines| match nines.round() as i64 {
            0 => "0%".to_string(),
            1 => "90%".to_string(),
            2 => "99%".to_string(),
            3 => "99.9%".to_string(),
            4 => "99.99%".to_string(),
            _ => "99.999%".to_string(),
        })
        .y_label_formatter(&|micros| format!("{micros:.0}"))
        .draw()
        .map_err(|error| draw(&error))?;
    let palette = [
        RGBColor(0, 114, 178),
        RGBColor(213, 94, 0),
        RGBColor(0, 158, 115),
        RGBColor(204, 121, 167),
    ];
    for (index, (name, points)) in series.iter().enumerate() {
        let color = palette[index % palette.len()];
        let line: Vec<(f64, f64)> = points
            .iter()
            .filter(|&&(_, micros)| micros > 0.0)
            .map(|&(percentile, micros)| (nines(percentile), micros))
            .collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
            .map_err(|error| draw(&error))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(line.into_iter().map(|point| Circle::new(point, 3, color.filled())))
            .map_err(|error| draw(&error))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|error| draw(&error))?;
    root.present().map_err(|error| draw(&error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_map_to_nines() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines(100.0), NINES_MAX);
    }
}
