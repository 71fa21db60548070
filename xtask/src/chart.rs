//! The benchmark's figures as one SVG picture beside BENCHMARKS.md: ingest by batch
//! size against the two database ceilings, GETs against pgbench running the same
//! query, and the latency of every run.

use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// One run of the service, with what it is compared against.
pub struct Bar {
    pub label: String,
    pub service: f64,
    pub ceiling: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

pub struct ChartData {
    /// Events per POST, events/s, p50 and p99 (auth off).
    pub ingest: Vec<(usize, f64, f64, f64)>,
    pub copy_ceiling: f64,
    pub insert_ceiling: f64,
    /// GETs: requests/s against pgbench's transactions/s of the same query.
    pub reads: Vec<Bar>,
}

const SERVICE: RGBColor = RGBColor(31, 119, 180);
const CEILING: RGBColor = RGBColor(255, 127, 14);
const SECOND_CEILING: RGBColor = RGBColor(44, 160, 44);

pub fn draw(path: &Path, data: &ChartData) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1500, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(chart_error)?;
    let panels = root.split_evenly((1, 3));
    draw_ingest(&panels[0], data)?;
    draw_reads(&panels[1], data)?;
    draw_latency(&panels[2], data)?;
    root.present().map_err(chart_error)?;
    Ok(())
}

fn thousands(value: &f64) -> String {
    format!("{:.0}k", value / 1000.0)
}

fn draw_ingest<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    data: &ChartData,
) -> anyhow::Result<()> {
    let largest = (data.ingest.iter().map(|run| run.1))
        .chain([data.copy_ceiling, data.insert_ceiling])
        .fold(1.0, f64::max);
    let sizes: Vec<usize> = data.ingest.iter().map(|run| run.0).collect();
    let size_labels: Vec<String> = sizes.iter().map(ToString::to_string).collect();
    let mut chart = ChartBuilder::on(area)
        .caption("POST: events/s by events per POST", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(-0.3f64..(sizes.len() as f64 - 0.7), 0f64..largest * 1.15)
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .x_labels(sizes.len())
        .x_label_formatter(&|x| label_at(&size_labels, *x))
        .y_label_formatter(&thousands)
        .x_desc("events per POST")
        .y_desc("events/s")
        .draw()
        .map_err(chart_error)?;
    let span = [-0.3, sizes.len() as f64 - 0.7];
    for (value, color, label) in [
        (data.copy_ceiling, CEILING, "raw COPY ceiling"),
        (
            data.insert_ceiling,
            SECOND_CEILING,
            "single-row INSERT ceiling (pgbench)",
        ),
    ] {
        chart
            .draw_series(LineSeries::new(
                span.map(|x| (x, value)),
                color.stroke_width(2),
            ))
            .map_err(chart_error)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    let points: Vec<(f64, f64)> = (data.ingest.iter().enumerate())
        .map(|(index, run)| (index as f64, run.1))
        .collect();
    chart
        .draw_series(LineSeries::new(points.clone(), SERVICE.stroke_width(3)))
        .map_err(chart_error)?
        .label("service")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], SERVICE));
    chart
        .draw_series(
            points
                .iter()
                .map(|point| Circle::new(*point, 4, SERVICE.filled())),
        )
        .map_err(chart_error)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(chart_error)?;
    Ok(())
}

fn draw_reads<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    data: &ChartData,
) -> anyhow::Result<()> {
    let largest = (data.reads.iter())
        .flat_map(|bar| [bar.service, bar.ceiling])
        .fold(1.0, f64::max);
    let count = data.reads.len() as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "GET: requests/s against pgbench, same query",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(-0.5f64..(count - 0.5), 0f64..largest * 1.15)
        .map_err(chart_error)?;
    let labels: Vec<String> = data.reads.iter().map(|bar| bar.label.clone()).collect();
    chart
        .configure_mesh()
        .x_labels(data.reads.len())
        .x_label_formatter(&|x| label_at(&labels, *x))
        .y_label_formatter(&thousands)
        .y_desc("requests/s")
        .disable_x_mesh()
        .draw()
        .map_err(chart_error)?;
    let pairs: Vec<(f64, f64)> = (data.reads.iter())
        .map(|bar| (bar.service, bar.ceiling))
        .collect();
    draw_pairs(
        &mut chart,
        &pairs,
        0.0,
        ["service", "pgbench ceiling"],
        SeriesLabelPosition::UpperRight,
    )
}

/// Two bars at each category, the first of each pair left of the second, with a
/// legend naming them; bars rise from `floor`.
fn draw_pairs<'a, DB: DrawingBackend + 'a, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
    pairs: &[(f64, f64)],
    floor: f64,
    names: [&str; 2],
    legend: SeriesLabelPosition,
) -> anyhow::Result<()> {
    let sides = [(-0.36, SERVICE, names[0]), (0.02, CEILING, names[1])];
    for (side, (offset, color, name)) in sides.into_iter().enumerate() {
        chart
            .draw_series(pairs.iter().enumerate().map(|(index, pair)| {
                let x = index as f64 + offset;
                let value = if side == 0 { pair.0 } else { pair.1 };
                Rectangle::new([(x, floor), (x + 0.34, value)], color.filled())
            }))
            .map_err(chart_error)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(chart_error)?;
    Ok(())
}

fn draw_latency<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    data: &ChartData,
) -> anyhow::Result<()> {
    let runs: Vec<(String, f64, f64)> = (data.ingest.iter())
        .map(|run| (format!("POST {}", run.0), run.2, run.3))
        .chain(
            data.reads
                .iter()
                .map(|bar| (bar.label.clone(), bar.p50_ms, bar.p99_ms)),
        )
        .collect();
    let largest = runs.iter().map(|run| run.2).fold(1.0, f64::max);
    let count = runs.len() as f64;
    let mut chart = ChartBuilder::on(area)
        .caption("Latency, p50 and p99 (ms, log scale)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(-0.5f64..(count - 0.5), (0.05f64..largest * 2.0).log_scale())
        .map_err(chart_error)?;
    let labels: Vec<String> = runs.iter().map(|run| run.0.clone()).collect();
    chart
        .configure_mesh()
        .x_labels(runs.len())
        .x_label_formatter(&|x| label_at(&labels, *x))
        .x_label_style(("sans-serif", 11))
        .disable_x_mesh()
        .draw()
        .map_err(chart_error)?;
    let pairs: Vec<(f64, f64)> = runs.iter().map(|run| (run.1, run.2)).collect();
    draw_pairs(
        &mut chart,
        &pairs,
        0.05,
        ["p50", "p99"],
        SeriesLabelPosition::UpperLeft,
    )
}

/// The label of the category at `x` (categories sit at 0, 1, 2, ...), none between.
fn label_at(labels: &[String], x: f64) -> String {
    (labels.iter().enumerate())
        .find(|(index, _)| (x - *index as f64).abs() < 0.01)
        .map(|(_, label)| label.clone())
        .unwrap_or_default()
}

/// Plotters' errors borrow nothing but are generic over the backend; as text.
fn chart_error<E: std::error::Error + Send + Sync>(
    error: DrawingAreaErrorKind<E>,
) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart failed: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_names_every_run_and_both_ceilings() {
        let bar = |label: &str, service| Bar {
            label: label.to_owned(),
            service,
            ceiling: 60_000.0,
            p50_ms: 0.9,
            p99_ms: 12.0,
        };
        let data = ChartData {
            ingest: vec![(1, 70_000.0, 1.6, 3.4), (100, 575_000.0, 5.5, 57.0)],
            copy_ceiling: 700_000.0,
            insert_ceiling: 30_000.0,
            reads: vec![bar("first page", 30_000.0), bar("page of 100", 14_000.0)],
        };
        let path = std::env::temp_dir().join(format!("chart-test-{}.svg", std::process::id()));
        draw(&path, &data).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        for text in [
            "<svg",
            "raw COPY ceiling",
            "single-row INSERT ceiling",
            "pgbench ceiling",
            "page of 100",
            "POST 100",
            "p99",
        ] {
            assert!(svg.contains(text), "{text} missing from the chart");
        }
    }
}
