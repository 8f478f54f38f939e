//! Figure 4's baseline: xfreerdp connected straight to the target on its own Xvfb, with key
//! presses made on the client's display and its pixels polled over the X protocol.
//!
//! Each press is made twice: with an XTEST `FakeInput` request sent by this process, so the
//! clock starts at the request, and with `xdotool keydown x`, whose own start-up (a process
//! and an X connection) lies inside the measured time.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdp_proxy_testkit::{Screenshot, Xfreerdp, colors_near};

use crate::desktop::{COLOR_TOLERANCE, DESKTOP_PASSWORD, DESKTOP_USER, HEIGHT, WIDTH};
use crate::input::{LONG, POLL_PAUSE, PRESS_TIMEOUT, SETTLE};
use crate::xclient::{KEYSYM_BACKSPACE, KEYSYM_X, Region, XConnection};

/// Times of one way of pressing the key, one entry per timed press.
#[derive(Default)]
pub struct DirectSeries {
    /// Press until the target's own display changed.
    pub target: Vec<Duration>,
    /// Press until the xfreerdp display changed.
    pub client: Vec<Duration>,
    /// Launch until exit of the injecting process (`xdotool` only).
    pub injector_exit: Vec<Duration>,
}

pub struct DirectResults {
    /// Whether xfreerdp loaded the RDP 8 graphics pipeline channel (rdpgfx).
    pub graphics_pipeline: bool,
    pub xtest: DirectSeries,
    pub xdotool: DirectSeries,
    /// Mean time of one poll round (the target, then the client display, then a pause).
    pub poll_interval: Option<Duration>,
}

/// xfreerdp 2.11 log line written when it loads the RDP 8 graphics pipeline channel.
const GRAPHICS_PIPELINE_LINE: &str = "Loading Dynamic Virtual Channel rdpgfx";

#[derive(Clone, Copy)]
enum Injector {
    XTest,
    Xdotool,
}

/// Connections and keycodes for one xfreerdp client.
struct Direct {
    client: Xfreerdp,
    client_display: XConnection,
    target_display: XConnection,
    region: Region,
    xtest: u8,
    key_x: u8,
    key_backspace: u8,
    polls: u64,
    polling: Duration,
}

/// Connects xfreerdp with `extra_args` to the target on port `port` and times `runs` presses
/// of each kind.
pub fn measure(
    port: u16,
    extra_args: &[&str],
    target_display: u32,
    region: Region,
    reference: &Screenshot,
    runs: usize,
) -> Result<DirectResults> {
    let mut client = Xfreerdp::connect(port, DESKTOP_USER, DESKTOP_PASSWORD, WIDTH, HEIGHT, extra_args)?;
    client.wait_first_frame(LONG)?;
    let mut client_display = XConnection::connect(client.screen().display_number())?;
    wait_until_shows_target(&mut client_display, region, reference)?;
    // Move the pointer to the centre, inside the xterm on both displays, and click, as in the
    // browser, so keyboard focus follows the pointer into xfreerdp's window and the xterm.
    run_xdotool(&client, &["mousemove", "960", "540", "click", "1"])?;
    std::thread::sleep(SETTLE);

    let xtest = client_display.xtest_opcode()?;
    let key_x = client_display.keycode(KEYSYM_X)?;
    let key_backspace = client_display.keycode(KEYSYM_BACKSPACE)?;
    let mut direct = Direct {
        client,
        client_display,
        target_display: XConnection::connect(target_display)?,
        region,
        xtest,
        key_x,
        key_backspace,
        polls: 0,
        polling: Duration::ZERO,
    };
    let mut results = DirectResults {
        graphics_pipeline: false,
        xtest: DirectSeries::default(),
        xdotool: DirectSeries::default(),
        poll_interval: None,
    };
    for press in 0..=runs {
        for injector in [Injector::XTest, Injector::Xdotool] {
            let counted = press > 0;
            let timing = direct.press(injector, counted)?;
            if !counted {
                continue;
            }
            let series = match injector {
                Injector::XTest => &mut results.xtest,
                Injector::Xdotool => &mut results.xdotool,
            };
            tracing::info!(
                press,
                injector = match injector {
                    Injector::XTest => "xtest",
                    Injector::Xdotool => "xdotool",
                },
                target_ms = timing.target.as_secs_f64() * 1000.0,
                client_ms = timing.client.as_secs_f64() * 1000.0,
                "direct press"
            );
            series.target.push(timing.target);
            series.client.push(timing.client);
            series.injector_exit.extend(timing.injector_exit);
        }
    }
    results.poll_interval = (direct.polls > 0).then(|| direct.polling / direct.polls as u32);
    results.graphics_pipeline = direct.client.log_text().contains(GRAPHICS_PIPELINE_LINE);
    Ok(results)
}

struct PressTiming {
    target: Duration,
    client: Duration,
    injector_exit: Option<Duration>,
}

impl Direct {
    /// Presses `x`, polls the target and the client display until the client shows the
    /// change, then releases the key, erases the character and lets the screens settle.
    fn press(&mut self, injector: Injector, counted: bool) -> Result<PressTiming> {
        let target_baseline = self.target_display.get_image(self.region)?;
        let client_baseline = self.client_display.get_image(self.region)?;
        let started = Instant::now();
        let mut process = match injector {
            Injector::XTest => {
                self.client_display.fake_key(self.xtest, self.key_x, true)?;
                None
            }
            Injector::Xdotool => Some(spawn_xdotool(&self.client, &["keydown", "x"])?),
        };
        let measured = self.poll(started, &target_baseline, &client_baseline, process.as_mut(), counted);
        if let Some(process) = process.as_mut() {
            let status = process.wait()?;
            if !status.success() {
                bail!("xdotool keydown exited with {status}");
            }
        }
        self.client_display.fake_key(self.xtest, self.key_x, false)?;
        self.client_display.fake_key(self.xtest, self.key_backspace, true)?;
        self.client_display.fake_key(self.xtest, self.key_backspace, false)?;
        std::thread::sleep(SETTLE);
        measured
    }

    fn poll(
        &mut self,
        started: Instant,
        target_baseline: &[u8],
        client_baseline: &[u8],
        mut process: Option<&mut Child>,
        counted: bool,
    ) -> Result<PressTiming> {
        let mut target = None;
        let mut injector_exit = None;
        let mut polls = 0;
        loop {
            if target.is_none() && self.target_display.get_image(self.region)? != target_baseline {
                target = Some(started.elapsed());
            }
            let client_changed = self.client_display.get_image(self.region)? != client_baseline;
            let elapsed = started.elapsed();
            polls += 1;
            if let Some(process) = process.as_deref_mut()
                && injector_exit.is_none()
                && process.try_wait()?.is_some()
            {
                injector_exit = Some(elapsed);
            }
            if client_changed {
                if counted {
                    self.polls += polls;
                    self.polling += elapsed;
                }
                return Ok(PressTiming {
                    // The target changes first; if both changed within one poll round, the
                    // client's time bounds the target's.
                    target: target.unwrap_or(elapsed),
                    client: elapsed,
                    injector_exit: injector_exit.or_else(|| process.is_some().then_some(elapsed)),
                });
            }
            if elapsed > PRESS_TIMEOUT {
                bail!("the xfreerdp display did not change within {PRESS_TIMEOUT:?} of the key press");
            }
            std::thread::sleep(POLL_PAUSE);
        }
    }
}

/// Waits until `region` of the xfreerdp display matches the target's screen, which shows that
/// xfreerdp's window sits at the origin and draws the desktop at 1:1.
fn wait_until_shows_target(connection: &mut XConnection, region: Region, reference: &Screenshot) -> Result<()> {
    let deadline = Instant::now() + LONG;
    loop {
        let pixels = connection.get_image(region)?;
        let share = region_differing_share(&pixels, region, reference);
        if share <= 0.01 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the xfreerdp display does not show the target's xterm at {region:?}: {:.1}% of its pixels differ",
                share * 100.0
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Share of pixels of a `GetImage` result (32-bit little-endian pixels, blue first) that differ
/// from the same region of `reference`.
fn region_differing_share(pixels: &[u8], region: Region, reference: &Screenshot) -> f64 {
    let mut differing = 0usize;
    let mut total = 0usize;
    for (index, pixel) in pixels.chunks_exact(4).enumerate() {
        let x = u32::from(region.x) + (index % usize::from(region.width)) as u32;
        let y = u32::from(region.y) + (index / usize::from(region.width)) as u32;
        let Some(expected) = reference.pixel(x, y) else {
            continue;
        };
        total += 1;
        if !colors_near([pixel[2], pixel[1], pixel[0]], expected, COLOR_TOLERANCE) {
            differing += 1;
        }
    }
    if total == 0 {
        return 1.0;
    }
    differing as f64 / total as f64
}

fn xdotool_command(client: &Xfreerdp, args: &[&str]) -> Command {
    let mut command = client.screen().command("xdotool");
    command.args(args);
    command
}

fn spawn_xdotool(client: &Xfreerdp, args: &[&str]) -> Result<Child> {
    xdotool_command(client, args)
        .spawn()
        .with_context(|| format!("failed to run xdotool {args:?}"))
}

fn run_xdotool(client: &Xfreerdp, args: &[&str]) -> Result<()> {
    let status = xdotool_command(client, args)
        .status()
        .with_context(|| format!("failed to run xdotool {args:?}"))?;
    if !status.success() {
        bail!("xdotool {args:?} exited with {status}");
    }
    Ok(())
}
