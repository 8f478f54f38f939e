//! Starts real Xvfb servers and reads their screens.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use rdp_proxy_testkit::Xvfb;

/// Polls the screen until some pixel is within ±16 of `color`.
fn wait_for_color(xvfb: &Xvfb, color: [u8; 3], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if xvfb.capture()?.count_near(color, 16) > 0 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("no pixel near {color:?} on {} within {timeout:?}", xvfb.display())
}

#[test]
fn xvfb_background_pixel_matches() -> Result<()> {
    let xvfb = Xvfb::start(320, 240)?;

    xvfb.set_background("#2266cc")?;

    assert_eq!(xvfb.pixel(10, 10)?, [0x22, 0x66, 0xcc]);
    assert_eq!(xvfb.pixel(319, 239)?, [0x22, 0x66, 0xcc]);
    assert!(xvfb.pixel(320, 0).is_err());
    Ok(())
}

#[test]
fn xvfb_capture_covers_whole_screen() -> Result<()> {
    let xvfb = Xvfb::start(320, 240)?;
    xvfb.set_background("#cc6622")?;

    let shot = xvfb.capture()?;

    assert_eq!((shot.width(), shot.height()), (320, 240));
    assert_eq!(shot.count_near([0xcc, 0x66, 0x22], 0), 320 * 240);
    Ok(())
}

#[test]
fn xvfb_xterm_window_appears() -> Result<()> {
    let xvfb = Xvfb::start(320, 240)?;
    xvfb.set_background("#2266cc")?;

    let mut xterm = xvfb.spawn_xterm(&["-geometry", "20x5+0+0", "-bg", "yellow", "-fg", "black"])?;

    wait_for_color(&xvfb, [0xff, 0xff, 0x00], Duration::from_secs(15))?;
    assert!(xterm.is_running());
    Ok(())
}

#[test]
fn xvfb_displays_are_distinct() -> Result<()> {
    let first = Xvfb::start(64, 64)?;
    let second = Xvfb::start(64, 64)?;

    assert_ne!(first.display(), second.display());
    assert_eq!(first.display(), format!(":{}", first.display_number()));
    Ok(())
}

#[test]
fn xvfb_drop_removes_socket() -> Result<()> {
    let xvfb = Xvfb::start(64, 64)?;
    let socket = format!("/tmp/.X11-unix/X{}", xvfb.display_number());
    let lock = format!("/tmp/.X{}-lock", xvfb.display_number());
    assert!(std::path::Path::new(&socket).exists());

    drop(xvfb);

    assert!(!std::path::Path::new(&socket).exists());
    assert!(!std::path::Path::new(&lock).exists());
    Ok(())
}

#[test]
fn xvfb_screenshot_png_is_png() -> Result<()> {
    let xvfb = Xvfb::start(64, 64)?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("screen.png");

    xvfb.screenshot_png(&path)?;

    let bytes = std::fs::read(&path)?;
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
    Ok(())
}
