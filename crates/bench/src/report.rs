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
    fn summary_format_without_unit() {
        let summary = Summary::of(&[1.0, 2.0, 3.0]).expect("three values");
        assert_eq!(summary.format(0, ""), "2 (1–3)");
    }
}
