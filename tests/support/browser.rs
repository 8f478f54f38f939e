//! Driving the portal and the viewer page in Chromium through WebDriver, and reading the
//! canvas pixels the viewer drew.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fantoccini::{Client, Locator};
use serde_json::Value;

/// Logs in through the portal's form and waits for the portal view.
pub async fn login(client: &Client, base: &str, user: &str, password: &str) -> Result<()> {
    client.goto(&format!("{base}/")).await?;
    let username = client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Id("username"))
        .await?;
    username.send_keys(user).await?;
    client.find(Locator::Id("password")).await?.send_keys(password).await?;
    client.find(Locator::Id("login-submit")).await?.click().await?;
    wait_for_script(
        client,
        "return !document.getElementById('portal-view').hidden",
        Duration::from_secs(15),
    )
    .await
    .context("portal did not appear after login")
}

/// Clicks a button in the sessions table row of `session_id`, waiting for the row to show it.
pub async fn click_session_button(client: &Client, session_id: &str, label: &str) -> Result<()> {
    let xpath = format!("//tr[@data-session-id='{session_id}']//button[normalize-space()='{label}']");
    let button = client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath(&xpath))
        .await
        .with_context(|| format!("no {label} button for session {session_id}"))?;
    button.click().await?;
    Ok(())
}

/// Clicks "Open desktop" for the target called `name`.
pub async fn open_desktop(client: &Client, name: &str) -> Result<()> {
    let css = format!("button[aria-label='Open desktop {name}']");
    let button = client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(&css))
        .await?;
    button.click().await?;
    Ok(())
}

/// Waits until the viewer page's `data-state` is `state`; returns the visible state text.
pub async fn wait_viewer_state(client: &Client, state: &str, limit: Duration) -> Result<String> {
    let deadline = Instant::now() + limit;
    loop {
        let value = client
            .execute(
                "return [document.body.dataset.state || '', document.body.dataset.stateText || '']",
                vec![],
            )
            .await?;
        let current = value[0].as_str().unwrap_or_default().to_owned();
        let text = value[1].as_str().unwrap_or_default().to_owned();
        if current == state {
            return Ok(text);
        }
        if Instant::now() > deadline {
            bail!("viewer state is {current:?} ({text:?}), expected {state:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the viewer has drawn at least `count` frames.
pub async fn wait_frames(client: &Client, count: u64, limit: Duration) -> Result<()> {
    let script = format!("return (window.rdpViewer && window.rdpViewer.framesDrawn || 0) >= {count}");
    wait_for_script(client, &script, limit)
        .await
        .context("viewer drew no frame")
}

/// Colour of one canvas pixel.
pub async fn canvas_pixel(client: &Client, x: u32, y: u32) -> Result<[u8; 3]> {
    let script = format!(
        "const d = document.getElementById('screen').getContext('2d').getImageData({x}, {y}, 1, 1).data; return [d[0], d[1], d[2]];"
    );
    let value = client.execute(&script, vec![]).await?;
    Ok(rgb(&value))
}

/// Waits until the canvas pixel at (`x`, `y`) is within `tolerance` of `expected`; returns the
/// last colour seen either way, so the caller's assertion shows it.
pub async fn wait_canvas_pixel(
    client: &Client,
    (x, y): (u32, u32),
    expected: [u8; 3],
    tolerance: u8,
    limit: Duration,
) -> Result<[u8; 3]> {
    let deadline = Instant::now() + limit;
    loop {
        let pixel = canvas_pixel(client, x, y).await?;
        let close = pixel.iter().zip(expected).all(|(a, e)| a.abs_diff(e) <= tolerance);
        if close || Instant::now() > deadline {
            return Ok(pixel);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Samples the canvas on a grid of `step` pixels; returns the size and the sampled colours.
pub async fn canvas_samples(client: &Client, step: u32) -> Result<(u32, u32, Vec<[u8; 3]>)> {
    let script = format!(
        "const c = document.getElementById('screen'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
         const out = []; for (let y = 0; y < c.height; y += {step}) {{ for (let x = 0; x < c.width; x += {step}) {{
           const i = (y * c.width + x) * 4; out.push(d[i], d[i + 1], d[i + 2]); }} }}
         return [c.width, c.height, out];"
    );
    let value = client.execute(&script, vec![]).await?;
    let width = value[0].as_u64().unwrap_or_default() as u32;
    let height = value[1].as_u64().unwrap_or_default() as u32;
    let flat: Vec<u8> = value[2]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|v| v.as_u64().unwrap_or_default() as u8)
        .collect();
    Ok((width, height, flat.chunks(3).map(|c| [c[0], c[1], c[2]]).collect()))
}

/// Share of samples that differ by more than `tolerance` in any channel.
pub fn difference(a: &[[u8; 3]], b: &[[u8; 3]], tolerance: u8) -> f64 {
    if a.len() != b.len() || a.is_empty() {
        return 1.0;
    }
    let differing = a
        .iter()
        .zip(b)
        .filter(|(p, q)| p.iter().zip(q.iter()).any(|(x, y)| x.abs_diff(*y) > tolerance))
        .count();
    differing as f64 / a.len() as f64
}

/// Clicks the canvas to focus it and types `text` into the remote desktop.
pub async fn type_into_canvas(client: &Client, text: &str) -> Result<()> {
    let canvas = client.find(Locator::Id("screen")).await?;
    canvas.click().await?;
    canvas.send_keys(text).await?;
    Ok(())
}

pub async fn wait_for_script(client: &Client, script: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if client.execute(script, vec![]).await?.as_bool() == Some(true) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("condition not met within {limit:?}: {script}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn rgb(value: &Value) -> [u8; 3] {
    let channel = |i: usize| value[i].as_u64().unwrap_or_default() as u8;
    [channel(0), channel(1), channel(2)]
}

/// Returns the current organisation's name as the portal header shows it.
pub async fn current_org_name(client: &Client) -> Result<String> {
    let value = client
        .execute("return document.getElementById('org-name').textContent", vec![])
        .await?;
    Ok(value.as_str().unwrap_or_default().to_owned())
}

/// Returns the options of the organisation picker as (value, label) pairs, in page order.
pub async fn org_choices(client: &Client) -> Result<Vec<(String, String)>> {
    let value = client
        .execute(
            "return [...document.querySelectorAll('#org-select option')].map((o) => [o.value, o.textContent])",
            vec![],
        )
        .await?;
    let pairs = value
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|pair| {
            let text = |i: usize| pair[i].as_str().unwrap_or_default().to_owned();
            (text(0), text(1))
        })
        .collect();
    Ok(pairs)
}

/// Chooses organisation `org_id` in the portal's picker and waits until the header shows
/// `org_name`.
pub async fn switch_org(client: &Client, org_id: &str, org_name: &str) -> Result<()> {
    let select = client.find(Locator::Id("org-select")).await?;
    select.select_by_value(org_id).await?;
    let script = "const name = document.getElementById('org-name').textContent;
         const select = document.getElementById('org-select');
         return name === arguments[0] && select.value === arguments[1] && !select.disabled;";
    wait_for_script_with(
        client,
        script,
        vec![Value::from(org_name), Value::from(org_id)],
        Duration::from_secs(15),
    )
    .await
    .with_context(|| format!("portal did not switch to organisation {org_name}"))
}

/// Returns the names in the Desktops list, in page order.
pub async fn target_names(client: &Client) -> Result<Vec<String>> {
    let value = client
        .execute(
            "return [...document.querySelectorAll('#targets li.target strong')].map((e) => e.textContent)",
            vec![],
        )
        .await?;
    Ok(strings(&value))
}

/// Waits until the Desktops list contains a target called `name`. The list is replaced as a
/// whole when a page arrives, so the other names are then final too.
pub async fn wait_target_listed(client: &Client, name: &str, limit: Duration) -> Result<()> {
    let script = "return [...document.querySelectorAll('#targets li.target strong')].some((e) => e.textContent === arguments[0])";
    wait_for_script_with(client, script, vec![Value::from(name)], limit)
        .await
        .with_context(|| format!("desktop {name} was not listed"))
}

/// Returns the session ids of the rows in the sessions table, in page order.
pub async fn session_row_ids(client: &Client) -> Result<Vec<String>> {
    let value = client
        .execute(
            "return [...document.querySelectorAll('#sessions-body tr[data-session-id]')].map((r) => r.dataset.sessionId)",
            vec![],
        )
        .await?;
    Ok(strings(&value))
}

/// Waits until the sessions table has a row for `session_id`.
pub async fn wait_session_row(client: &Client, session_id: &str, limit: Duration) -> Result<()> {
    let script = "return document.querySelector(`#sessions-body tr[data-session-id=\"${arguments[0]}\"]`) !== null";
    wait_for_script_with(client, script, vec![Value::from(session_id)], limit)
        .await
        .with_context(|| format!("no row for session {session_id} in the sessions table"))
}

/// Waits until the sessions list has loaded and is empty ("no sessions" message shown).
pub async fn wait_sessions_empty(client: &Client, limit: Duration) -> Result<()> {
    let script = "return !document.getElementById('sessions-empty').hidden
         && document.querySelectorAll('#sessions-body tr').length === 0";
    wait_for_script(client, script, limit)
        .await
        .context("sessions list did not load as empty")
}

/// Returns the `session` parameter of the current page's address, if any.
pub async fn session_in_url(client: &Client) -> Result<Option<String>> {
    let url = client.current_url().await?;
    Ok(url
        .query_pairs()
        .find(|(name, _)| name == "session")
        .map(|(_, value)| value.into_owned()))
}

/// Saves a PNG screenshot of the browser window to `path`, creating its directory.
pub async fn save_screenshot(client: &Client, path: &std::path::Path) -> Result<()> {
    let png = client.screenshot().await?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, png).with_context(|| format!("could not write {}", path.display()))
}

/// Opens the portal in a new tab, closes the current tab and continues in the new one, as a user
/// who closes a viewer tab and goes on in the portal. The browser keeps its stored login.
pub async fn close_tab_for_portal(client: &Client, base: &str) -> Result<()> {
    let closing = client.window().await?;
    let portal = client.new_window(true).await?;
    client.switch_to_window(portal.handle.clone()).await?;
    client.goto(&format!("{base}/")).await?;
    client.switch_to_window(closing).await?;
    client.close_window().await?;
    client.switch_to_window(portal.handle).await?;
    wait_for_script(
        client,
        "return !document.getElementById('portal-view').hidden",
        Duration::from_secs(15),
    )
    .await
    .context("portal did not appear in the new tab")
}

/// Like [`wait_for_script`], passing `args` to the script as `arguments`.
pub async fn wait_for_script_with(client: &Client, script: &str, args: Vec<Value>, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if client.execute(script, args.clone()).await?.as_bool() == Some(true) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("condition not met within {limit:?}: {script} with {args:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|item| item.as_str().unwrap_or_default().to_owned())
        .collect()
}
