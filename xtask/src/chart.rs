//! The benchmark's figures as one SVG picture beside BENCHMARKS.md: ingest by batch
//! size against the two database ceilings, GETs against pgbench running the same
//! query, and the latency of every run.

use std::path::Path;

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
    for (offset, color, label, value) in [
        (
            -0.36,
            SERVICE,
            "service",
            (|bar: &Bar| bar.service) as fn(&Bar) -> f64,
        ),
        (0.02, CEILING, "pgbench ceiling", |bar: &Bar| bar.ceiling),
    ] {
        chart
            .draw_series(data.reads.iter().enumerate().map(|(index, bar)| {
                let x = index as f64 + offset;
                Rectangle::new([(x, 0.0), (x + 0.34, value(bar))], color.filled())
            }))
            .map_err(chart_error)?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
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
    for (offset, color, label, value) in [
        (
            -0.36,
            SERVICE,
            "p50",
            (|run: &(String, f64, f64)| run.1) as fn(&(String, f64, f64)) -> f64,
        ),
        (0.02, CEILING, "p99", |run: &(String, f64, f64)| run.2),
    ] {
        chart
            .draw_series(runs.iter().enumerate().map(|(index, run)| {
                let x = index as f64 + offset;
                Rectangle::new([(x, 0.05), (x + 0.34, value(run))], color.filled())
            }))
            .map_err(chart_error)?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(chart_error)?;
    Ok(())
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
