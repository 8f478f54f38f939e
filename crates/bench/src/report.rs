//! Summaries of repeated measurements and the Markdown table printed at the end of a run.

use std::fmt::Write as _;
use std::time::Duration;

/// Minimum, median and maximum of a series of measurements in one unit.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Summary {
    /// Summarises `values`; `None` when there are none. The median of an even count is the
    /// mean of the two middle values.
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        let median = if sorted.len().is_multiple_of(2) {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        } else {
            sorted[middle]
        };
        Some(Self {
            min: sorted[0],
            median,
            max: sorted[sorted.len() - 1],
        })
    }

    /// Summarises durations in milliseconds.
    pub fn of_millis(values: &[Duration]) -> Option<Self> {
        let millis: Vec<f64> = values.iter().map(|value| value.as_secs_f64() * 1000.0).collect();
        Self::of(&millis)
    }

    /// Formats as `median (min–max) unit` with `decimals` digits after the point; an empty
    /// `unit` leaves out the unit.
    pub fn format(&self, decimals: usize, unit: &str) -> String {
        let values = format!(
            "{:.decimals$} ({:.decimals$}–{:.decimals$})",
            self.median, self.min, self.max
        );
        if unit.is_empty() {
            values
        } else {
            format!("{values} {unit}")
        }
    }
}

/// Formats an optional summary, or `not measured` when it is missing.
pub fn format_summary(summary: Option<Summary>, decimals: usize, unit: &str) -> String {
    summary.map_or_else(|| "not measured".to_owned(), |summary| summary.format(decimals, unit))
}

/// Converts bytes to mebibytes.
pub fn mebibytes(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

/// Unit in which [`Timings`] are printed.
#[derive(Clone, Copy, Debug)]
pub enum TimeUnit {
    /// Microseconds, printed with one decimal.
    Micros,
    /// Milliseconds, printed with three decimals.
    Millis,
}

impl TimeUnit {
    fn of(self, duration: Duration) -> f64 {
        match self {
            TimeUnit::Micros => duration.as_secs_f64() * 1_000_000.0,
            TimeUnit::Millis => duration.as_secs_f64() * 1_000.0,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            TimeUnit::Micros => "µs",
            TimeUnit::Millis => "ms",
        }
    }

    fn decimals(self) -> usize {
        match self {
            TimeUnit::Micros => 1,
            TimeUnit::Millis => 3,
        }
    }
}

/// Individually timed operations of one kind, sorted from fastest to slowest.
pub struct Timings {
    samples: Vec<Duration>,
}

impl Timings {
    /// Sorts `samples`. Panics when `samples` is empty, because no percentile exists then.
    pub fn new(mut samples: Vec<Duration>) -> Timings {
        assert!(!samples.is_empty(), "Timings::new needs at least one sample");
        samples.sort_unstable();
        Timings { samples }
    }

    /// Returns the nearest-rank percentile `percent`.
    pub fn percentile(&self, percent: f64) -> Duration {
        let rank = (percent / 100.0 * self.samples.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.samples.len()) - 1;
        self.samples[index]
    }

    pub fn mean(&self) -> Duration {
        let total: Duration = self.samples.iter().sum();
        Duration::from_secs_f64(total.as_secs_f64() / self.samples.len() as f64)
    }

    /// Summarises the samples in `unit`, for the summary table.
    pub fn summary(&self, unit: TimeUnit) -> Option<Summary> {
        let values: Vec<f64> = self.samples.iter().map(|&sample| unit.of(sample)).collect();
        Summary::of(&values)
    }

    /// Formats as `p50 …, p95 …, p99 …, mean … unit (N samples)`.
    pub fn describe(&self, unit: TimeUnit) -> String {
        let decimals = unit.decimals();
        format!(
            "p50 {:.decimals$}, p95 {:.decimals$}, p99 {:.decimals$}, mean {:.decimals$} {} ({} samples)",
            unit.of(self.percentile(50.0)),
            unit.of(self.percentile(95.0)),
            unit.of(self.percentile(99.0)),
            unit.of(self.mean()),
            unit.symbol(),
            self.samples.len()
        )
    }

    /// Returns `self / denominator` of the p50s, formatted with three decimals.
    pub fn p50_ratio(&self, denominator: &Timings) -> String {
        let denominator = denominator.percentile(50.0).as_secs_f64();
        if denominator == 0.0 {
            return "—".to_owned();
        }
        format!("{:.3}", self.percentile(50.0).as_secs_f64() / denominator)
    }

    /// Returns the ratio of the medians as the summary table computes them.
    pub fn median_ratio(&self, denominator: &Timings) -> String {
        match (self.summary(TimeUnit::Micros), denominator.summary(TimeUnit::Micros)) {
            (Some(numerator), Some(denominator)) if denominator.median > 0.0 => {
                format!("{:.3}", numerator.median / denominator.median)
            }
            _ => "—".to_owned(),
        }
    }
}

/// One row of the final table: a figure, the measured value, its baseline and their ratio.
pub struct Row {
    pub figure: String,
    pub measured: String,
    pub baseline: String,
    pub ratio: String,
    pub goal: String,
}

/// Renders `rows` as a Markdown table.
pub fn markdown_table(rows: &[Row]) -> String {
    let mut table = String::from(
        "| figure | measured: median (min–max) | baseline: median (min–max) | ratio of medians | goal |\n\
         |---|---|---|---|---|\n",
    );
    for row in rows {
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {} |",
            row.figure, row.measured, row.baseline, row.ratio, row.goal
        );
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_odd_count() {
        let summary = Summary::of(&[3.0, 1.0, 2.0]).expect("three values");
        assert_eq!(summary.min, 1.0);
        assert_eq!(summary.median, 2.0);
        assert_eq!(summary.max, 3.0);
    }

    #[test]
    fn summary_of_even_count() {
        let summary = Summary::of(&[4.0, 1.0, 2.0, 3.0]).expect("four values");
        assert_eq!(summary.median, 2.5);
    }

    #[test]
    fn summary_of_nothing() {
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn summary_format() {
        let summary = Summary::of(&[1.25, 2.5, 10.0]).expect("three values");
        assert_eq!(summary.format(1, "ms"), "2.5 (1.2–10.0) ms");
    }

    #[test]
    fn timings_percentiles() {
        let samples = (1..=100).map(Duration::from_millis).rev().collect();
        let timings = Timings::new(samples);
        assert_eq!(timings.percentile(50.0), Duration::from_millis(50));
        assert_eq!(timings.percentile(95.0), Duration::from_millis(95));
        assert_eq!(timings.percentile(99.0), Duration::from_millis(99));
        assert_eq!(timings.percentile(0.0), Duration::from_millis(1));
        assert_eq!(timings.percentile(100.0), Duration::from_millis(100));
    }

    #[test]
    fn timings_mean() {
        let timings = Timings::new(vec![Duration::from_micros(10), Duration::from_micros(30)]);
        assert_eq!(timings.mean(), Duration::from_micros(20));
    }

    #[test]
    fn timings_describe_millis() {
        let timings = Timings::new(vec![Duration::from_micros(1_500)]);
        assert_eq!(
            timings.describe(TimeUnit::Millis),
            "p50 1.500, p95 1.500, p99 1.500, mean 1.500 ms (1 samples)"
        );
    }

    #[test]
    fn timings_p50_ratio() {
        let numerator = Timings::new(vec![Duration::from_millis(3)]);
        let denominator = Timings::new(vec![Duration::from_millis(2)]);
        assert_eq!(numerator.p50_ratio(&denominator), "1.500");
    }

    #[test]
    fn summary_format_without_unit() {
        let summary = Summary::of(&[1.0, 2.0, 3.0]).expect("three values");
        assert_eq!(summary.format(0, ""), "2 (1–3)");
    }
}
