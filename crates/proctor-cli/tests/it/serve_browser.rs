//! The dashboard of `proctor serve` in headless Chromium, driven through chromedriver
//! (WebDriver): log in with the token, run `text/stats@1`'s smoke example from the page and
//! watch it succeed, open its receipt, apply a two-step plan and watch its DAG reach
//! success, then look at the ledger chain and the processors. Every page visited is
//! saved as a PNG in `target/screenshots/` (`PROCTOR_SCREENSHOT_DIR` overrides it).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/setup.sh`) and the Docker
//! engine. Chromium runs as root here, hence `--no-sandbox`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::serve::{RUN_WAIT, Server, TWO_STEP_PLAN, containers_of};

/// The longest wait for chromedriver to answer or a page to show what it loads.
const PAGE_WAIT: Duration = Duration::from_secs(60);
/// How often a poll asks again.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// The first bytes of every PNG file.
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// A chromedriver process on a free loopback port, killed when dropped.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    fn start() -> ChromeDriver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver, scripts/setup.sh)");
        ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A headless Chromium session, once chromedriver answers.
    async fn session(&self) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({"args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1280,800",
            ]}),
        );
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&self.url)
                .await
            {
                Ok(client) => return client,
                Err(error) => {
                    assert!(Instant::now() < deadline, "no WebDriver session: {error}");
                    tokio::time::sleep(POLL_EVERY).await;
                }
            }
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where screenshots go: `PROCTOR_SCREENSHOT_DIR`, else the workspace's
/// `target/screenshots`.
fn screenshot_dir() -> PathBuf {
    std::env::var_os("PROCTOR_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots")
        })
}

/// Saves the page as `dashboard-{name}.png` and checks that the file is a non-empty PNG.
async fn screenshot(browser: &Client, name: &str) {
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("dashboard-{name}.png"));
    let png = browser.screenshot().await.unwrap();
    std::fs::write(&path, &png).unwrap();
    let written = std::fs::read(&path).unwrap();
    assert!(
        written.len() > PNG_SIGNATURE.len() && written.starts_with(PNG_SIGNATURE),
        "{} is not a PNG",
        path.display()
    );
}

/// `[data-testid="{id}"]`.
fn test_id(id: &str) -> String {
    format!(r#"[data-testid="{id}"]"#)
}

/// Polls `probe` until it gives a value, for at most `limit`; `what` names the wait.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The text of the first element matching `css`, once there is one.
async fn text_of(browser: &Client, css: &str) -> Option<String> {
    let element = browser.find(Locator::Css(css)).await.ok()?;
    element.text().await.ok()
}

/// The attribute `name` of every element matching `css`.
async fn attrs_of(browser: &Client, css: &str, name: &str) -> Vec<Option<String>> {
    let mut values = Vec::new();
    for element in browser
        .find_all(Locator::Css(css))
        .await
        .unwrap_or_default()
    {
        values.push(element.attr(name).await.ok().flatten());
    }
    values
}

/// Waits for the page at a path starting with `prefix`; the path.
async fn wait_for_path(browser: &Client, prefix: &str) -> String {
    eventually(PAGE_WAIT, &format!("a page under {prefix}"), || async {
        let url = browser.current_url().await.ok()?;
        url.path()
            .starts_with(prefix)
            .then(|| url.path().to_owned())
    })
    .await
}

/// Clicks the element with the test id, once it is there: found again while the page
/// re-renders it (a stale or covered element is tried again).
async fn click(browser: &Client, id: &str) {
    eventually(PAGE_WAIT, &format!("{id} to take a click"), || async {
        let element = browser.find(Locator::Css(&test_id(id))).await.ok()?;
        element.click().await.ok()
    })
    .await;
}

/// Ticks the checkbox with the test id unless it is ticked.
async fn tick(browser: &Client, id: &str) {
    eventually(PAGE_WAIT, &format!("{id} ticked"), || async {
        let element = browser.find(Locator::Css(&test_id(id))).await.ok()?;
        if !element.is_selected().await.ok()? {
            element.click().await.ok()?;
        }
        element.is_selected().await.ok()?.then_some(())
    })
    .await;
}

/// Chooses `value` in the select with the test id, once it offers it.
async fn choose(browser: &Client, id: &str, value: &str) {
    eventually(PAGE_WAIT, &format!("{value} in {id}"), || async {
        let element = browser.find(Locator::Css(&test_id(id))).await.ok()?;
        element.select_by_value(value).await.ok()?;
        (element.prop("value").await.ok()?? == value).then_some(())
    })
    .await;
}

/// Logs in through the form, which must reject a wrong token first.
async fn log_in(browser: &Client, server: &Server) {
    browser.goto(&format!("{}/", server.url)).await.unwrap();
    wait_for_path(browser, "/login").await;
    screenshot(browser, "login").await;
    let field = browser
        .find(Locator::Css(&test_id("token-input")))
        .await
        .unwrap();
    field.send_keys(&"f".repeat(64)).await.unwrap();
    click(browser, "login-submit").await;
    let error_css = test_id("login-error");
    let error = eventually(PAGE_WAIT, "the login error", || {
        text_of(browser, &error_css)
    })
    .await;
    assert!(!error.trim().is_empty());
    let field = browser
        .find(Locator::Css(&test_id("token-input")))
        .await
        .unwrap();
    field.clear().await.unwrap();
    field.send_keys(&server.token).await.unwrap();
    click(browser, "login-submit").await;
    eventually(PAGE_WAIT, "the executions page", || async {
        let url = browser.current_url().await.ok()?;
        let table = browser
            .find(Locator::Css(&test_id("executions-table")))
            .await;
        (url.path() == "/" && table.is_ok()).then_some(())
    })
    .await;
}

/// Runs the smoke example of `text/stats@1` from the run form; the new execution's id.
async fn run_smoke_from_the_page(browser: &Client) -> String {
    choose(browser, "run-processor", "text/stats@1").await;
    eventually(PAGE_WAIT, "the smoke example preselected", || async {
        let example = browser
            .find(Locator::Css(&test_id("run-example")))
            .await
            .ok()?;
        (example.prop("value").await.ok()?? == "smoke").then_some(())
    })
    .await;
    choose(browser, "run-mode", "mock").await;
    tick(browser, "run-build").await;
    screenshot(browser, "executions").await;
    click(browser, "run-submit").await;
    let path = wait_for_path(browser, "/executions/").await;
    path.trim_start_matches("/executions/").to_owned()
}

/// Waits until the execution page shows `succeeded`, checks the outputs and the
/// verification, opens the receipt.
async fn watch_the_execution(browser: &Client, server: &Server, id: &str) {
    let state_css = test_id("execution-state");
    let state = eventually(RUN_WAIT, "the execution to end", || async {
        let state = text_of(browser, &state_css).await?;
        let state = state.trim().to_owned();
        ["succeeded", "failed", "cancelled"]
            .contains(&state.as_str())
            .then_some(state)
    })
    .await;
    assert_eq!(state, "succeeded", "{}", server.log());
    eventually(PAGE_WAIT, "every verification check ✓", || async {
        let oks = attrs_of(browser, &test_id("verify-check"), "data-ok").await;
        (!oks.is_empty() && oks.iter().all(|ok| ok.as_deref() == Some("true"))).then_some(())
    })
    .await;
    let outputs = eventually(PAGE_WAIT, "the outputs with previews", || async {
        let previews = browser
            .find_all(Locator::Css(&test_id("output-preview")))
            .await
            .ok()?;
        (previews.len() >= 2).then_some(previews.len())
    })
    .await;
    assert!(outputs >= 2);
    let envelope = text_of(browser, &test_id("execution-envelope"))
        .await
        .unwrap();
    assert!(envelope.contains(id), "{envelope}");
    screenshot(browser, "execution").await;

    click(browser, "receipt-toggle").await;
    let receipt = eventually(PAGE_WAIT, "the receipt", || async {
        let receipt = browser
            .find(Locator::Css(&test_id("execution-receipt")))
            .await
            .ok()?;
        if !receipt.is_displayed().await.ok()? {
            return None;
        }
        let text = receipt.text().await.ok()?;
        text.contains(id).then_some(text)
    })
    .await;
    let receipt: Value = serde_json::from_str(&receipt).expect("the receipt as JSON");
    assert_eq!(receipt["execution_id"], id);
    screenshot(browser, "receipt").await;
}

/// Submits the two-step plan from the plans page and watches its DAG reach success;
/// the plan's execution ids.
async fn apply_a_plan_from_the_page(browser: &Client, server: &Server) -> Vec<String> {
    click(browser, "nav-plans").await;
    wait_for_path(browser, "/plans").await;
    let document = eventually(PAGE_WAIT, "the plan form", || async {
        browser
            .find(Locator::Css(&test_id("plan-document")))
            .await
            .ok()
    })
    .await;
    // The plan as one line of JSON: nothing for a text field to re-indent.
    let plan: Value = serde_yaml_ng::from_str(TWO_STEP_PLAN).unwrap();
    document.send_keys(&plan.to_string()).await.unwrap();
    tick(browser, "plan-build").await;
    click(browser, "plan-submit").await;
    wait_for_path(browser, "/plans/served").await;
    let state = eventually(RUN_WAIT, "the plan to end", || async {
        let state = text_of(browser, &test_id("plan-state")).await?;
        let state = state.trim().to_owned();
        ["succeeded", "failed", "cancelled"]
            .contains(&state.as_str())
            .then_some(state)
    })
    .await;
    assert_eq!(state, "succeeded", "{}", server.log());
    let node_css = test_id("dag-node");
    let states = eventually(PAGE_WAIT, "the DAG's nodes to succeed", || async {
        let states = attrs_of(browser, &node_css, "data-state").await;
        let done = states.len() == 2 && states.iter().all(|s| s.as_deref() == Some("succeeded"));
        done.then_some(states)
    })
    .await;
    assert_eq!(states.len(), 2);
    let transitions = attrs_of(browser, &node_css, "data-transition").await;
    assert_eq!(transitions.len(), 2);
    for id in ["count", "recount"] {
        assert!(
            transitions.contains(&Some(id.to_owned())),
            "{transitions:?}"
        );
    }
    screenshot(browser, "plan").await;
    let plan = server.get_json("/v1/plans/served").await;
    plan["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["execution_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The ledger chain of the plan verifies on its page; the processors page lists pins.
async fn look_at_the_ledger_and_processors(browser: &Client, server: &Server) {
    browser
        .goto(&format!("{}/ledger/served", server.url))
        .await
        .unwrap();
    let ok = eventually(PAGE_WAIT, "the chain's verification", || async {
        attrs_of(browser, &test_id("chain-verification"), "data-ok")
            .await
            .into_iter()
            .next()
            .flatten()
    })
    .await;
    assert_eq!(ok, "true");
    let events = browser
        .find_all(Locator::Css(&test_id("chain-event")))
        .await
        .unwrap();
    assert!(!events.is_empty());
    screenshot(browser, "ledger").await;
    click(browser, "nav-processors").await;
    let refs = eventually(PAGE_WAIT, "the processors", || async {
        let refs = attrs_of(browser, &test_id("processor-row"), "data-ref").await;
        refs.contains(&Some("text/stats@1".to_owned()))
            .then_some(refs)
    })
    .await;
    assert!(refs.len() > 1, "{refs:?}");
    eventually(PAGE_WAIT, "the drift report", || async {
        browser
            .find(Locator::Css(&test_id("drift-report")))
            .await
            .ok()
    })
    .await;
    screenshot(browser, "processors").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_logs_in_runs_the_smoke_example_and_applies_a_plan() {
    let mut server = Server::workspace(&[]);
    let driver = ChromeDriver::start();
    let browser = driver.session().await;

    log_in(&browser, &server).await;
    let id = run_smoke_from_the_page(&browser).await;
    watch_the_execution(&browser, &server, &id).await;
    let plan_executions = apply_a_plan_from_the_page(&browser, &server).await;
    look_at_the_ledger_and_processors(&browser, &server).await;

    // The executions table lists the run, live.
    click(&browser, "nav-executions").await;
    eventually(PAGE_WAIT, "the run in the table", || async {
        let rows = attrs_of(&browser, &test_id("execution-row"), "data-execution-id").await;
        rows.contains(&Some(id.clone())).then_some(())
    })
    .await;
    click(&browser, "logout").await;
    wait_for_path(&browser, "/login").await;
    browser.close().await.unwrap();

    assert_eq!(server.stop(), 0, "{}", server.log());
    for execution in plan_executions.iter().chain([&id]) {
        assert!(containers_of(execution).await.is_empty(), "{execution}");
    }
}
