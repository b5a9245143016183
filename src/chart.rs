//! `--chart FILE.svg`: the steps of a probe as an SVG a person opens in a browser.
//!
//! Top: one bar per step, its height the worker count, green when the step passed, red
//! when it was rate limited, grey otherwise, with the recommended count drawn as a line.
//! Bottom: latency p50 and p95 (ms, left axis) and throughput (answered prompts per
//! second, right axis) per step. Rendered with plotters' SVG backend.

use plotters::prelude::*;

use crate::report::ProbeResult;

const PASSED: RGBColor = RGBColor(46, 160, 67);
const LIMITED: RGBColor = RGBColor(207, 34, 46);
const OTHER: RGBColor = RGBColor(140, 140, 140);
const P50: RGBColor = RGBColor(9, 105, 218);
const P95: RGBColor = RGBColor(130, 80, 223);
const RPS: RGBColor = RGBColor(191, 135, 0);

/// Renders the chart to an SVG string.
pub fn render(result: &ProbeResult) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 720)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (top, bottom) = root.split_vertically(380);
        draw_steps(&top, result)?;
        draw_latency(&bottom, result)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Writes the chart to `path` (atomically, like the result file).
pub fn write(path: &std::path::Path, result: &ProbeResult) -> Result<(), String> {
    let svg = render(result)?;
    crate::report::write_atomically(path, svg.as_bytes()).map_err(|e| {
        format!(
            "{}: cannot write the chart: {}",
            path.display(),
            crate::config::io_reason(&e)
        )
    })
}

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("chart: {e:?}")
}

fn draw_steps<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    r: &ProbeResult,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let n = r.runs.len().max(1) as u32;
    let max_w = r.runs.iter().map(|x| x.workers).max().unwrap_or(1).max(1);
    let title = match r.recommended_workers {
        Some(w) => format!(
            "{} on {}: recommended {}",
            r.model,
            r.provider,
            crate::report::workers(w)
        ),
        None => format!(
            "{} on {}: no recommendation ({})",
            r.model, r.provider, r.outcome
        ),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0u32..n, 0u32..(max_w + max_w / 5 + 1))
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("step")
        .y_desc("workers")
        .x_labels(n as usize)
        .x_label_formatter(&|x| format!("{}", x + 1))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(r.runs.iter().enumerate().map(|(i, run)| {
            let color = match run.status.as_str() {
                "passed" => PASSED,
                "rate_limited" => LIMITED,
                _ => OTHER,
            };
            let i = i as u32;
            Rectangle::new([(i, 0), (i + 1, run.workers)], color.filled()).into_dyn()
        }))
        .map_err(err)?;
    chart
        .draw_series(r.runs.iter().enumerate().map(|(i, run)| {
            Text::new(
                format!(
                    "{} {}",
                    run.workers,
                    if run.status == "passed" {
                        "ok"
                    } else {
                        &run.status
                    }
                ),
                (i as u32, run.workers + max_w / 40 + 1),
                ("sans-serif", 14),
            )
        }))
        .map_err(err)?;
    if let Some(w) = r.recommended_workers {
        chart
            .draw_series(LineSeries::new([(0, w), (n, w)], BLACK.stroke_width(2)))
            .map_err(err)?
            .label(format!("recommended: {w}"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK.stroke_width(2)));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

fn draw_latency<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    r: &ProbeResult,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let n = r.runs.len().max(1) as u32;
    let p = |f: fn(&crate::report::Percentiles) -> f64| -> Vec<(u32, f64)> {
        r.runs
            .iter()
            .enumerate()
            .filter_map(|(i, run)| run.latency_ms.as_ref().map(|l| (i as u32, f(l))))
            .collect()
    };
    let p50 = p(|l| l.p50);
    let p95 = p(|l| l.p95);
    let rps: Vec<(u32, f64)> = r
        .runs
        .iter()
        .enumerate()
        .map(|(i, run)| (i as u32, run.throughput_rps))
        .collect();
    let max_lat = p95.iter().chain(&p50).map(|x| x.1).fold(1.0, f64::max) * 1.15;
    let max_rps = rps.iter().map(|x| x.1).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption("latency and throughput per step", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .right_y_label_area_size(56)
        .build_cartesian_2d(0u32..n, 0f64..max_lat)
        .map_err(err)?
        .set_secondary_coord(0u32..n, 0f64..max_rps);
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("latency (ms)")
        .x_labels(n as usize)
        .x_label_formatter(&|x| format!("{}", x + 1))
        .draw()
        .map_err(err)?;
    chart
        .configure_secondary_axes()
        .y_desc("answered prompts / s")
        .draw()
        .map_err(err)?;
    for (points, color, label) in [(&p50, P50, "latency p50"), (&p95, P95, "latency p95")] {
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
            )
            .map_err(err)?;
    }
    chart
        .draw_secondary_series(LineSeries::new(rps.clone(), RPS.stroke_width(2)))
        .map_err(err)?
        .label("throughput (right axis)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], RPS.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ProbeResult, ResultSettings, RunRecord, Totals};

    fn run(workers: u32, status: &str, p50: f64) -> RunRecord {
        let limited = u32::from(status == "rate_limited");
        let mut r = crate::report::summary::tests::run(
            workers,
            workers * 2 - limited,
            limited,
            p50,
            0,
            1000,
        );
        r.throughput_rps = f64::from(workers) * 2.0;
        r
    }

    fn result() -> ProbeResult {
        ProbeResult {
            schema_version: 1,
            tool_version: "0".into(),
            model: "gpt-4o".into(),
            provider: "openai".into(),
            endpoint: "http://127.0.0.1/v1/chat/completions".into(),
            recommended_workers: Some(21),
            max_tested: 27,
            outcome: "found".into(),
            error: None,
            cap_reached: false,
            interrupted: false,
            started_at: "2026-12-03T12:00:00.000Z".into(),
            duration_ms: 6000,
            settings: ResultSettings {
                max_workers: 100,
                min_output_tokens: 500,
                max_tokens: 1000,
                stream: false,
                max_retries: 3,
                prompt_chars: 10,
            },
            runs: vec![
                run(3, "passed", 400.0),
                run(6, "passed", 410.0),
                run(12, "passed", 420.0),
                run(18, "passed", 430.0),
                run(27, "rate_limited", 300.0),
                run(21, "passed", 440.0),
            ],
            totals: Totals::default(),
            insights: Default::default(),
        }
    }

    #[test]
    fn the_svg_shows_one_bar_per_step_coloured_by_status() {
        let svg = render(&result()).unwrap();
        let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let fills = |color: &str| {
            doc.descendants()
                .filter(|n| {
                    n.has_tag_name("rect")
                        && n.attribute("fill")
                            .is_some_and(|f| f.eq_ignore_ascii_case(color))
                })
                .count()
        };
        assert_eq!(fills("#2EA043"), 5, "green bars: the passed steps");
        assert_eq!(fills("#CF222E"), 1, "red bar: the rate-limited step");
        let texts: Vec<String> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.text().unwrap_or("").trim().to_string())
            .collect();
        for want in [
            "gpt-4o on openai: recommended 21 workers",
            "27 rate_limited",
            "21 ok",
            "recommended: 21",
            "latency p50",
            "latency p95",
            "throughput (right axis)",
        ] {
            assert!(
                texts.iter().any(|t| t == want),
                "no text {want:?} in {texts:?}"
            );
        }
        // The p50 line passes through the six steps' points.
        let p50_points = doc
            .descendants()
            .filter(|n| {
                n.has_tag_name("circle")
                    && n.attribute("fill")
                        .is_some_and(|f| f.eq_ignore_ascii_case("#0969DA"))
            })
            .count();
        assert_eq!(p50_points, 6);
    }
}
