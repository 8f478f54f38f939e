//! Starts chromedriver and drives headless Chromium through fantoccini.

use anyhow::Result;
use rdp_proxy_testkit::Chromium;

#[tokio::test(flavor = "multi_thread")]
async fn chromium_reads_data_url_title() -> Result<()> {
    let chromium = tokio::task::spawn_blocking(Chromium::start).await??;
    let client = chromium.new_client().await?;

    client
        .goto("data:text/html,<title>testkit page</title><p>hello</p>")
        .await?;
    let title = client.title().await?;

    assert_eq!(title, "testkit page");
    client.close().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_clients_are_separate_browsers() -> Result<()> {
    let chromium = tokio::task::spawn_blocking(Chromium::start).await??;
    let first = chromium.new_client().await?;
    let second = chromium.new_client().await?;

    let size = first
        .execute("return [window.outerWidth, window.outerHeight]", vec![])
        .await?;
    first.goto("data:text/html,<title>first</title>").await?;
    second.goto("data:text/html,<title>second</title>").await?;

    assert_eq!(first.title().await?, "first");
    assert_eq!(second.title().await?, "second");
    assert_eq!(size, serde_json::json!([1600, 1000]));
    let browsers = chromium.browser_pids();
    assert!(!browsers.is_empty());

    drop(first);
    drop(second);
    tokio::task::spawn_blocking(move || drop(chromium)).await?;
    let survivors: Vec<u32> = browsers.into_iter().filter(|&pid| is_alive(pid)).collect();
    assert_eq!(survivors, Vec::<u32>::new());
    Ok(())
}

/// Returns true if `pid` exists and is not a zombie.
fn is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}
