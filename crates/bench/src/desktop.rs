//! The RDP target every figure measures against, and the rdp-proxy stack in front of it.
//!
//! The target is `freerdp-shadow-cli` in NLA mode serving a 1920x1080 Xvfb with a coloured
//! background and a yellow xterm over the centre of the screen. A click in the middle of the
//! viewer lands in the xterm, and because the display has no window manager, keyboard focus
//! follows the pointer into it, so typed characters change pixels.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdp_proxy_e2e::Stack;
use rdp_proxy_testkit::{ProcessGuard, Screenshot, ShadowMode, ShadowServer, Xvfb, colors_near};

use crate::xclient::Region;

pub const WIDTH: u32 = 1920;
pub const HEIGHT: u32 = 1080;
/// Bytes of one 1920x1080 framebuffer at 4 bytes per pixel.
pub const FRAMEBUFFER_BYTES: u64 = WIDTH as u64 * HEIGHT as u64 * 4;

pub const MEMBER: (&str, &str) = ("bench", "bench-password-1");
pub const DESKTOP_USER: &str = "desk";
pub const DESKTOP_PASSWORD: &str = "Desk-Secret-4711";
pub const TARGET_NAME: &str = "bench-desktop";
const BACKGROUND: &str = "#2266cc";
const XTERM_BACKGROUND: [u8; 3] = [255, 255, 0];
/// Per-channel difference below which two pixels count as equal. The shadow server's codecs
/// can shift colours slightly.
pub const COLOR_TOLERANCE: u8 = 16;

/// A shadow-served 1920x1080 desktop with an xterm, and the screen as the target draws it.
pub struct Desktop {
    /// Kept so the xterm runs, and is stopped, with the desktop.
    _xterm: ProcessGuard,
    pub shadow: ShadowServer,
    pub xvfb: Xvfb,
    /// The target's own screen once the xterm was drawn, to compare viewers against.
    pub reference: Screenshot,
    /// The xterm's window on the target screen, found from its background colour.
    pub xterm_region: Region,
}

impl Desktop {
    /// Starts Xvfb, the xterm and the shadow server; blocks until the xterm is on screen.
    pub fn start() -> Result<Self> {
        let xvfb = Xvfb::start(WIDTH, HEIGHT)?;
        xvfb.set_background(BACKGROUND)?;
        // 80x20 cells of the default 6x13 font: about 484x264 pixels from (720, 400), which
        // covers the screen centre (960, 540).
        let xterm = xvfb.spawn_xterm(&[
            "-geometry",
            "80x20+720+400",
            "-bg",
            "yellow",
            "-fg",
            "black",
            "-e",
            "bash",
            "--norc",
            "--noprofile",
        ])?;
        let (reference, xterm_region) = wait_for_xterm(&xvfb)?;
        let shadow = ShadowServer::start(&xvfb, ShadowMode::nla(DESKTOP_USER, DESKTOP_PASSWORD))?;
        Ok(Self {
            _xterm: xterm,
            shadow,
            xvfb,
            reference,
            xterm_region,
        })
    }

    /// Starts a second xterm, 100x40 cells at the top left, that prints a line every 100 ms,
    /// so the target's screen scrolls an area of about 600x520 pixels 10 times a second, like a
    /// log followed in a terminal. The returned guard stops it.
    pub fn start_scrolling_log(&self) -> Result<ProcessGuard> {
        self.xvfb.spawn_xterm(&[
            "-geometry",
            "100x40+20+20",
            "-e",
            "bash",
            "-c",
            "while :; do date +%T.%N; sleep 0.1; done",
        ])
    }
}

/// Waits until the xterm's yellow background shows, then captures the screen and returns it
/// with the bounding box of the yellow pixels.
fn wait_for_xterm(xvfb: &Xvfb) -> Result<(Screenshot, Region)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let screen = xvfb.capture()?;
        if let Some(region) = bounding_box(&screen, XTERM_BACKGROUND) {
            // The prompt appears a moment after the window; wait for it before the reference.
            std::thread::sleep(Duration::from_millis(500));
            return Ok((xvfb.capture()?, region));
        }
        if Instant::now() > deadline {
            bail!("the xterm did not appear on {} within 30 s", xvfb.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Returns the smallest rectangle that contains every pixel of `color` (within the tolerance).
fn bounding_box(screen: &Screenshot, color: [u8; 3]) -> Option<Region> {
    let (mut left, mut top, mut right, mut bottom) = (u32::MAX, u32::MAX, 0, 0);
    for y in 0..screen.height() {
        for x in 0..screen.width() {
            let pixel = screen.pixel(x, y)?;
            if colors_near(pixel, color, COLOR_TOLERANCE) {
                left = left.min(x);
                top = top.min(y);
                right = right.max(x);
                bottom = bottom.max(y);
            }
        }
    }
    if left > right {
        return None;
    }
    Some(Region {
        x: u16::try_from(left).ok()?,
        y: u16::try_from(top).ok()?,
        width: u16::try_from(right - left + 1).ok()?,
        height: u16::try_from(bottom - top + 1).ok()?,
    })
}

/// Share of grid samples (every `step` pixels) where `rgba` (4 bytes per pixel, `width` wide)
/// differs from `reference` by more than [`COLOR_TOLERANCE`] in any channel.
pub fn differing_share(rgba: &[u8], width: usize, reference: &Screenshot, step: usize) -> f64 {
    let mut samples = 0usize;
    let mut differing = 0usize;
    for y in (0..reference.height() as usize).step_by(step) {
        for x in (0..reference.width() as usize).step_by(step) {
            let index = (y * width + x) * 4;
            let Some(pixel) = rgba.get(index..index + 3) else {
                continue;
            };
            let Some(expected) = reference.pixel(x as u32, y as u32) else {
                continue;
            };
            samples += 1;
            if !colors_near([pixel[0], pixel[1], pixel[2]], expected, COLOR_TOLERANCE) {
                differing += 1;
            }
        }
    }
    if samples == 0 {
        return 1.0;
    }
    differing as f64 / samples as f64
}

/// Starts the rdp-proxy stack (PostgreSQL, Redis, control plane, one worker) and registers the
/// bench member and `desktop` as the target. Returns the stack and the target id.
pub fn start_stack(binary: &Path, desktop: &Desktop) -> Result<(Stack, String)> {
    let stack = Stack::start(binary).with_context(|| format!("failed to start the stack with {}", binary.display()))?;
    stack.add_user(MEMBER.0, MEMBER.1, "member")?;
    let target = stack.add_target(
        TARGET_NAME,
        desktop.shadow.port(),
        "nla",
        DESKTOP_USER,
        DESKTOP_PASSWORD,
    )?;
    Ok((stack, target))
}

/// Returns the PID of the worker process of a single-worker stack.
pub fn worker_pid(stack: &Stack) -> Result<u32> {
    Ok(stack.workers.first().context("the stack has no worker")?.process.pid())
}

/// Drops `value` (stacks, desktops, browsers) on the current thread, telling the runtime that
/// it blocks while the processes stop.
pub fn teardown<T>(value: T) {
    tokio::task::block_in_place(|| drop(value));
}
