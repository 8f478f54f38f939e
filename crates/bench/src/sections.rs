//! Prints each figure's results as a Markdown section and adds its rows to the summary table.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::desktop::{FRAMEBUFFER_BYTES, HEIGHT, WIDTH};
use crate::held_sessions::{HeldOptions, HeldRun};
use crate::input::InputResults;
use crate::machine::{self, Machine};
use crate::proxy::AttachTiming;
use crate::reattach::ReattachResults;
use crate::report::{Row, Summary, format_summary, mebibytes};

pub fn print_machine(machine: &Machine, binary: &Path, command: &str) -> Result<()> {
    let load = machine::load_average()?;
    println!("# rdp-proxy benchmark\n");
    println!("- date: {}", machine.date);
    println!("- command: `{command}`");
    println!("- binary: {}", binary.display());
    if let Some(revision) = &machine.revision {
        println!("- source (`git describe --always --dirty`): {revision}");
    }
    println!(
        "- machine: {} processing units (`nproc`), {}, MemTotal {:.1} GiB, {}",
        machine.nproc,
        machine.cpu_model,
        mebibytes(machine.mem_total as f64) / 1024.0,
        machine.kernel
    );
    println!("- load average at start: {}", format_load(load));
    println!();
    Ok(())
}

pub fn print_load(before: [f64; 3], after: [f64; 3]) {
    println!(
        "Load average (1, 5, 15 min) before: {}; after: {}.\n",
        format_load(before),
        format_load(after)
    );
}

fn format_load(load: [f64; 3]) -> String {
    format!("{:.2} {:.2} {:.2}", load[0], load[1], load[2])
}

fn millis(values: &[Duration]) -> Option<Summary> {
    Summary::of_millis(values)
}

fn ratio(numerator: Option<Summary>, denominator: Option<Summary>) -> Option<f64> {
    let (numerator, denominator) = (numerator?, denominator?);
    (denominator.median != 0.0).then(|| numerator.median / denominator.median)
}

fn format_ratio(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "—".to_owned(), |value| format!("{value:.decimals$}"))
}

fn format_phases(timings: &[AttachTiming]) -> String {
    let phase = |select: fn(&AttachTiming) -> Duration| {
        let values: Vec<Duration> = timings.iter().map(select).collect();
        format_summary(millis(&values), 1, "ms")
    };
    let batches: Vec<f64> = timings.iter().map(|timing| timing.batches as f64).collect();
    let kibibytes: Vec<f64> = timings.iter().map(|timing| timing.bytes as f64 / 1024.0).collect();
    format!(
        "attach response {}; `ready` {}; first batch end {}; batches up to the full frame {}; bytes received up to the full frame {}",
        phase(|timing| timing.token),
        phase(|timing| timing.ready),
        phase(|timing| timing.first_batch),
        format_summary(Summary::of(&batches), 0, ""),
        format_summary(Summary::of(&kibibytes), 0, "KiB"),
    )
}

pub fn print_reattach(results: &ReattachResults, rows: &mut Vec<Row>) {
    let full = |timings: &[AttachTiming]| {
        let values: Vec<Duration> = timings.iter().map(|timing| timing.full_frame).collect();
        millis(&values)
    };
    let reattach = full(&results.reattach);
    let fresh = full(&results.fresh);
    let xfreerdp = millis(&results.xfreerdp);
    let xfreerdp_rfx = millis(&results.xfreerdp_rfx);

    println!("## 1. Reattach → first full frame ({WIDTH}x{HEIGHT}, freerdp-shadow with NLA)\n");
    println!("Runs: {}. Values are median (min–max).\n", results.reattach.len());
    println!(
        "- reattach, attach request → batch end of the first full frame received: {}",
        format_summary(reattach, 1, "ms")
    );
    println!("  - from the attach request: {}", format_phases(&results.reattach));
    println!(
        "- baseline: fresh proxied session, create request → first full frame: {}",
        format_summary(fresh, 1, "ms")
    );
    println!("  - from the create request: {}", format_phases(&results.fresh));
    println!(
        "- baseline: xfreerdp launch → first non-black pixel on its display (testkit `connect_and_time_first_frame`): {}",
        format_summary(xfreerdp, 1, "ms")
    );
    println!(
        "- baseline: xfreerdp `/rfx` launch → first non-black pixel: {}",
        format_summary(xfreerdp_rfx, 1, "ms")
    );

    let goal_ratio = ratio(reattach, xfreerdp);
    println!(
        "- ratio reattach / xfreerdp (medians): {} (goal ≤ 0.1)",
        format_ratio(goal_ratio, 3)
    );
    println!(
        "- ratio reattach / xfreerdp `/rfx` (medians): {}",
        format_ratio(ratio(reattach, xfreerdp_rfx), 3)
    );
    println!(
        "- ratio reattach / fresh proxied session (medians): {}",
        format_ratio(ratio(reattach, fresh), 3)
    );
    println!(
        "\nA full frame is a batch after which at most 1% of pixels sampled every 8 pixels differ from the target's own screen by more than 16 per channel. Batches are timed when their end arrives and decoded afterwards.\n"
    );

    rows.push(Row {
        figure: "1. Reattach → first full frame".into(),
        measured: format_summary(reattach, 1, "ms"),
        baseline: format!("xfreerdp launch → first frame: {}", format_summary(xfreerdp, 1, "ms")),
        ratio: format_ratio(goal_ratio, 3),
        goal: "≤ 0.1".into(),
    });
    rows.push(Row {
        figure: "1. Reattach → first full frame, against xfreerdp `/rfx`".into(),
        measured: format_summary(reattach, 1, "ms"),
        baseline: format!(
            "xfreerdp `/rfx` launch → first frame: {}",
            format_summary(xfreerdp_rfx, 1, "ms")
        ),
        ratio: format_ratio(ratio(reattach, xfreerdp_rfx), 3),
        goal: "≤ 0.1".into(),
    });
    rows.push(Row {
        figure: "1. Fresh proxied session: create → first full frame".into(),
        measured: format_summary(fresh, 1, "ms"),
        baseline: format!("xfreerdp launch → first frame: {}", format_summary(xfreerdp, 1, "ms")),
        ratio: format_ratio(ratio(fresh, xfreerdp), 3),
        goal: "—".into(),
    });
}

fn mib_summary(values: &[f64]) -> Option<Summary> {
    let mib: Vec<f64> = values.iter().map(|&bytes| mebibytes(bytes)).collect();
    Summary::of(&mib)
}

fn collect<T>(runs: &[HeldRun], select: impl Fn(&HeldRun) -> T) -> Vec<T> {
    runs.iter().map(select).collect()
}

/// Per-session figures of the held-session runs, summarised over the runs.
struct HeldMedians {
    worker_rss_per_session: Option<Summary>,
    worker_rss_per_session_scrolling: Option<Summary>,
    worker_rss_before: Option<Summary>,
    shadow_rss_per_client: Option<Summary>,
    worker_cpu_idle: Option<Summary>,
    worker_cpu_scrolling: Option<Summary>,
    shadow_cpu_scrolling: Option<Summary>,
}

pub fn print_held(runs: &[HeldRun], options: &HeldOptions, machine: &Machine, rows: &mut Vec<Row>) {
    let framebuffer_mib = mebibytes(FRAMEBUFFER_BYTES as f64);
    let sessions = options.sessions;
    let medians = HeldMedians {
        worker_rss_per_session: mib_summary(&collect(runs, HeldRun::worker_rss_per_session)),
        worker_rss_per_session_scrolling: mib_summary(&collect(runs, HeldRun::worker_rss_per_session_scrolling)),
        worker_rss_before: mib_summary(&collect(runs, |run| run.worker_rss_before as f64)),
        shadow_rss_per_client: mib_summary(&collect(runs, HeldRun::shadow_rss_per_client)),
        worker_cpu_idle: Summary::of(&collect(runs, HeldRun::worker_cpu_per_session_idle)),
        worker_cpu_scrolling: Summary::of(&collect(runs, HeldRun::worker_cpu_per_session_scrolling)),
        shadow_cpu_scrolling: Summary::of(&collect(runs, HeldRun::shadow_cpu_per_client_scrolling)),
    };
    let per_session = medians.worker_rss_per_session;
    let framebuffer_ratio = per_session.map(|summary| summary.median / framebuffer_mib);

    println!("## 2. Resident memory per held, detached {WIDTH}x{HEIGHT} session\n");
    println!(
        "Runs: {}, each with a new worker and target. Per run: {sessions} sessions opened one after another, each shown once to a viewer until its first full frame and then detached, then {} s idle. Memory is `VmRSS`; 1 MiB = 1,048,576 bytes.\n",
        runs.len(),
        options.idle.as_secs()
    );
    println!(
        "- worker RSS with no sessions: {}",
        format_summary(medians.worker_rss_before, 1, "MiB")
    );
    println!(
        "- worker RSS with {sessions} detached sessions: {}",
        format_summary(mib_summary(&collect(runs, |run| run.worker_rss_after as f64)), 1, "MiB")
    );
    println!(
        "- worker RSS per session, (after − before) / {sessions}: {}",
        format_summary(per_session, 2, "MiB")
    );
    println!(
        "  - first session alone: {}; each later session: {}",
        format_summary(
            mib_summary(
                &runs
                    .iter()
                    .filter_map(HeldRun::worker_rss_first_session)
                    .collect::<Vec<_>>()
            ),
            2,
            "MiB"
        ),
        format_summary(
            mib_summary(
                &runs
                    .iter()
                    .filter_map(HeldRun::worker_rss_per_later_session)
                    .collect::<Vec<_>>()
            ),
            2,
            "MiB"
        ),
    );
    println!(
        "  - after the CPU readings of figure 3, including {} s of a terminal scrolling every 100 ms: {}",
        options.cpu_interval.as_secs(),
        format_summary(medians.worker_rss_per_session_scrolling, 2, "MiB")
    );
    println!(
        "- baseline: one {WIDTH}x{HEIGHT} framebuffer at 4 bytes per pixel: {FRAMEBUFFER_BYTES} bytes = {framebuffer_mib:.2} MiB"
    );
    println!(
        "- ratio per-session RSS / framebuffer (medians): {} (goal ≤ 1.5)",
        format_ratio(framebuffer_ratio, 2)
    );
    println!(
        "- shadow server (target side) RSS per client: {}; with no clients: {}",
        format_summary(medians.shadow_rss_per_client, 2, "MiB"),
        format_summary(
            mib_summary(&collect(runs, |run| run.shadow_rss_before as f64)),
            1,
            "MiB"
        ),
    );
    println!();
    rows.push(Row {
        figure: format!("2. Worker RSS per held, detached session ({sessions} held)"),
        measured: format_summary(per_session, 2, "MiB"),
        baseline: format!("framebuffer {WIDTH}×{HEIGHT}×4: {framebuffer_mib:.2} MiB"),
        ratio: format_ratio(framebuffer_ratio, 2),
        goal: "≤ 1.5".into(),
    });
    rows.push(Row {
        figure: "2. Shadow server (target) RSS per client".into(),
        measured: format_summary(medians.shadow_rss_per_client, 2, "MiB"),
        baseline: format!("framebuffer: {framebuffer_mib:.2} MiB"),
        ratio: format_ratio(
            medians
                .shadow_rss_per_client
                .map(|summary| summary.median / framebuffer_mib),
            2,
        ),
        goal: "—".into(),
    });
    print_capacity(runs, options, machine, &medians, rows);
}

fn print_capacity(
    runs: &[HeldRun],
    options: &HeldOptions,
    machine: &Machine,
    medians: &HeldMedians,
    rows: &mut Vec<Row>,
) {
    let sessions = options.sessions;
    let percent = |select: fn(&HeldRun) -> f64| Summary::of(&collect(runs, select));
    let tick = machine::cpu_tick();
    let resolution = 100.0 * tick.as_secs_f64() / options.cpu_interval.as_secs_f64();
    println!("## 3. Held sessions one machine keeps\n");
    println!(
        "Same runs as figure 2. CPU is `utime + stime` from `/proc/PID/stat` over {} s, in percent of one core; one tick is {} ms, so a reading resolves {resolution:.2}% of a core.\n",
        options.cpu_interval.as_secs(),
        tick.as_millis()
    );
    println!(
        "- worker CPU with no sessions (baseline): {}",
        format_summary(percent(|run| run.worker_cpu_empty.percent_of_core()), 2, "%")
    );
    println!(
        "- worker CPU with {sessions} detached sessions, static target screen: {}; per session above the baseline: {}",
        format_summary(percent(|run| run.worker_cpu_idle.percent_of_core()), 2, "%"),
        format_summary(medians.worker_cpu_idle, 3, "%")
    );
    println!(
        "- worker CPU with {sessions} detached sessions, a terminal on the target scrolling a line every 100 ms: {}; per session above the baseline: {}",
        format_summary(percent(|run| run.worker_cpu_scrolling.percent_of_core()), 2, "%"),
        format_summary(medians.worker_cpu_scrolling, 3, "%")
    );
    println!(
        "- shadow server CPU (target side): no clients {}; {sessions} clients, static {}; {sessions} clients, scrolling {} (per client above no clients: {})",
        format_summary(percent(|run| run.shadow_cpu_empty.percent_of_core()), 2, "%"),
        format_summary(percent(|run| run.shadow_cpu_idle.percent_of_core()), 2, "%"),
        format_summary(percent(|run| run.shadow_cpu_scrolling.percent_of_core()), 2, "%"),
        format_summary(medians.shadow_cpu_scrolling, 3, "%"),
    );

    let cores: f64 = machine.nproc.parse().unwrap_or(1.0);
    let mem_total_mib = mebibytes(machine.mem_total as f64);
    let estimate = Capacity::estimate(mem_total_mib, cores, medians, resolution / sessions as f64);
    println!(
        "\n**Estimate** (computed from the per-session costs measured above, not measured with that many sessions) for this machine: MemTotal {:.0} MiB, {cores} cores.\n",
        mem_total_mib
    );
    println!(
        "- memory: (MemTotal − worker RSS with no sessions) / the larger per-session RSS of figure 2 = {}",
        format_count(estimate.by_memory)
    );
    println!(
        "- CPU, static screens: {} cores × 100% / per-session CPU = {}",
        cores,
        estimate.by_cpu_idle.map_or_else(
            || "not limiting: per-session CPU is below the reading's resolution".to_owned(),
            format_count_value
        )
    );
    println!(
        "- CPU, a terminal scrolling every 100 ms on every target: {}",
        estimate.by_cpu_scrolling.map_or_else(
            || "not limiting: per-session CPU is below the reading's resolution".to_owned(),
            format_count_value
        )
    );
    println!(
        "- with the targets on this machine too, as in this benchmark (worker plus shadow server per session): memory {}, CPU with scrolling terminals {}",
        format_count(estimate.with_targets_by_memory),
        estimate
            .with_targets_by_cpu_scrolling
            .map_or_else(|| "not limiting".to_owned(), format_count_value)
    );
    println!(
        "- estimated held sessions, worker only: {} (limited by {})\n",
        format_count(estimate.sessions),
        estimate.limit
    );
    rows.push(Row {
        figure: "3. Worker CPU per detached session, target terminal scrolling every 100 ms".into(),
        measured: format_summary(medians.worker_cpu_scrolling, 3, "% of a core"),
        baseline: format!(
            "worker with no sessions: {}",
            format_summary(percent(|run| run.worker_cpu_empty.percent_of_core()), 2, "%")
        ),
        ratio: "—".into(),
        goal: "—".into(),
    });
    rows.push(Row {
        figure: format!("3. Held sessions on this machine (**estimate** from per-session cost, {cores} cores)"),
        measured: format!("{} (limited by {})", format_count(estimate.sessions), estimate.limit),
        baseline: format!("measured with {sessions} sessions"),
        ratio: "—".into(),
        goal: "—".into(),
    });
}

fn format_count(value: Option<f64>) -> String {
    value.map_or_else(|| "not computed".to_owned(), format_count_value)
}

fn format_count_value(value: f64) -> String {
    format!("about {:.0} sessions", value.floor())
}

/// Sessions one machine could hold, computed from measured per-session costs.
// NOTE: this extrapolates linearly from the sessions measured, so costs that appear only with
// many sessions (file descriptors, database connections) are not in it.
struct Capacity {
    by_memory: Option<f64>,
    by_cpu_idle: Option<f64>,
    by_cpu_scrolling: Option<f64>,
    with_targets_by_memory: Option<f64>,
    with_targets_by_cpu_scrolling: Option<f64>,
    sessions: Option<f64>,
    limit: &'static str,
}

impl Capacity {
    /// `resolution` is the smallest per-session CPU share, in percent of a core, that the
    /// readings can tell from zero.
    fn estimate(mem_total_mib: f64, cores: f64, medians: &HeldMedians, resolution: f64) -> Self {
        let per_session_mib = [medians.worker_rss_per_session, medians.worker_rss_per_session_scrolling]
            .iter()
            .flatten()
            .map(|summary| summary.median)
            .fold(None, |max: Option<f64>, value| {
                Some(max.map_or(value, |max| max.max(value)))
            });
        let base_mib = medians.worker_rss_before.map_or(0.0, |summary| summary.median);

        let by_memory = per_session_mib
            .filter(|&mib| mib > 0.0)
            .map(|mib| (mem_total_mib - base_mib) / mib);
        let by_cpu = |summary: Option<Summary>| {
            summary
                .map(|summary| summary.median)
                .filter(|&percent| percent > resolution)
                .map(|percent| cores * 100.0 / percent)
        };
        let by_cpu_idle = by_cpu(medians.worker_cpu_idle);
        let by_cpu_scrolling = by_cpu(medians.worker_cpu_scrolling);

        let target_mib = medians
            .shadow_rss_per_client
            .map_or(0.0, |summary| summary.median.max(0.0));
        let with_targets_by_memory = per_session_mib
            .filter(|&mib| mib + target_mib > 0.0)
            .map(|mib| (mem_total_mib - base_mib) / (mib + target_mib));
        let with_targets_by_cpu_scrolling = match (medians.worker_cpu_scrolling, medians.shadow_cpu_scrolling) {
            (Some(worker), Some(shadow)) if worker.median + shadow.median > resolution => {
                Some(cores * 100.0 / (worker.median + shadow.median))
            }
            _ => None,
        };

        let candidates = [
            (by_memory, "memory"),
            (by_cpu_idle, "CPU with static screens"),
            (by_cpu_scrolling, "CPU with a scrolling terminal on every target"),
        ];
        let (sessions, limit) = candidates
            .iter()
            .filter_map(|(value, name)| value.map(|value| (value, *name)))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map_or((None, "nothing measured"), |(value, name)| (Some(value), name));
        Self {
            by_memory,
            by_cpu_idle,
            by_cpu_scrolling,
            with_targets_by_memory,
            with_targets_by_cpu_scrolling,
            sessions,
            limit,
        }
    }
}

pub fn print_input(results: &InputResults, rows: &mut Vec<Row>) {
    let drawn = millis(&results.browser_drawn);
    let seen = millis(&results.browser_seen);
    let frame = format_interval(results.browser_frame_interval);
    let region = results.region;

    println!("## 4. Key press → changed pixel\n");
    println!(
        "Runs: {} presses of `x` in an xterm on the target for each method, after one untimed press. Watched region: the xterm, {}x{} at ({}, {}). The target's own display is polled as well (X `GetImage`, mean poll interval {} during the browser presses), which shows when the target drew the character.\n",
        results.browser_seen.len(),
        region.width,
        region.height,
        region.x,
        region.y,
        format_interval(results.browser_target_poll_interval),
    );
    println!(
        "Through rdp-proxy in headless Chromium, from `keydown` dispatched on the canvas (the viewer's own input handler sends it):\n"
    );
    println!(
        "- → changed pixels drawn on the canvas (batch-end hook; resolution of `performance.now()`, 0.1 ms or finer): {}",
        format_summary(drawn, 1, "ms")
    );
    println!(
        "- → first animation frame whose `getImageData` shows the change (resolution one frame, median interval {frame}): {}",
        format_summary(seen, 1, "ms")
    );
    println!(
        "- target display changed, timed from the start of the WebDriver call that dispatches the key, so a few ms late: {}",
        format_summary(millis(&results.browser_target), 1, "ms")
    );

    for (label, direct) in &results.direct {
        let xtest = millis(&direct.xtest.client);
        println!(
            "\nBaseline, {label} straight to the target on its own Xvfb (rdpgfx channel loaded: {}), polling the client display over X (`GetImage`; a poll round of target and client display takes {} on average):\n",
            if direct.graphics_pipeline { "yes" } else { "no" },
            format_interval(direct.poll_interval)
        );
        println!(
            "- XTEST key press sent by the bench → client display changed: {}; target display changed: {}",
            format_summary(xtest, 1, "ms"),
            format_summary(millis(&direct.xtest.target), 1, "ms")
        );
        println!(
            "- `xdotool keydown x` launched → client display changed: {}; target display changed: {}; xdotool exited: {}",
            format_summary(millis(&direct.xdotool.client), 1, "ms"),
            format_summary(millis(&direct.xdotool.target), 1, "ms"),
            format_summary(millis(&direct.xdotool.injector_exit), 1, "ms")
        );
        println!(
            "- ratio proxy (animation frame) / {label} XTEST (medians): {}; proxy (drawn) / {label} XTEST: {}",
            format_ratio(ratio(seen, xtest), 2),
            format_ratio(ratio(drawn, xtest), 2)
        );

        rows.push(Row {
            figure: format!("4. Key → changed pixel, rdp-proxy in Chromium (next animation frame) vs {label}"),
            measured: format_summary(seen, 1, "ms"),
            baseline: format!("{label}, XTEST press: {}", format_summary(xtest, 1, "ms")),
            ratio: format_ratio(ratio(seen, xtest), 2),
            goal: "—".into(),
        });
    }
    println!();
    rows.push(Row {
        figure: "4. Key → changed pixel, rdp-proxy in Chromium (drawn on canvas)".into(),
        measured: format_summary(drawn, 1, "ms"),
        baseline: "same baselines as above".into(),
        ratio: "—".into(),
        goal: "—".into(),
    });
}

fn format_interval(interval: Option<Duration>) -> String {
    interval.map_or_else(
        || "unknown".to_owned(),
        |interval| format!("{:.2} ms", interval.as_secs_f64() * 1000.0),
    )
}
