//! Alert rules end to end: the real `weir` binary, events on its stdin
//! with chosen event times, and a real HTTP server standing in for Slack
//! and for an Alertmanager webhook receiver.

use crate::common::*;
use std::io::Write;
use std::process::Child;
use std::time::Duration;

/// Event times start here (a multiple of the 10 s window).
const BASE: i64 = 1_700_000_000;

/// The query counts errors per service in 10 s windows; `{rule}` and
/// `{route}` are filled in per test.
const PIPELINE: &str = r#"
[settings]
data_dir = "state"
batch_timeout_ms = 10

[sources.app]
type = "stdin"
timestamp_field = "ts"

[queries.errors]
inputs = ["app"]
sql = """
SELECT window_start, service, sum(CASE WHEN level = 'error' THEN 1 ELSE 0 END) AS errors
FROM app GROUP BY tumble(interval '10 seconds'), service
"""
idle_timeout = "0s"
schema = { service = "string", level = "string" }

[sinks.rows]
type = "blackhole"
inputs = ["errors"]

[alerts.high_errors]
query = "errors"
condition = "errors >= 3"
labels = { severity = "page" }
summary = "{{ service }}: {{ errors }} errors in 10 s"
{rule}

{route}
"#;

fn pipeline_with(dir: &std::path::Path, rule: &str, route: &str) -> std::path::PathBuf {
    pipeline(
        dir,
        &PIPELINE.replace("{rule}", rule).replace("{route}", route),
    )
}

/// A route to the one Slack receiver at `url`, with `settings` (grouping
/// and timings) in `[route]`.
fn slack_route(url: &str, settings: &str) -> String {
    format!("[route]\n{settings}\n\n[receivers.slack]\ntype = \"slack\"\nurl = \"{url}\"\n")
}

/// Writes window `w`'s events: `errors` error lines per service, and one
/// info line so every service has a row.
fn feed(child: &mut Child, w: i64, services: &[(&str, usize)]) {
    let ts = BASE + 10 * w + 1;
    let mut lines = String::new();
    for (service, errors) in services {
        lines.push_str(&format!(
            "{{\"ts\":{ts},\"service\":\"{service}\",\"level\":\"info\"}}\n"
        ));
        for _ in 0..*errors {
            lines.push_str(&format!(
                "{{\"ts\":{ts},\"service\":\"{service}\",\"level\":\"error\"}}\n"
            ));
        }
    }
    let stdin = child.stdin.as_mut().expect("stdin is piped");
    stdin.write_all(lines.as_bytes()).unwrap();
    stdin.flush().unwrap();
}

fn finish(mut child: Child) -> String {
    drop(child.stdin.take());
    let out = wait_output(child, 60);
    let err = stderr(&out);
    assert!(out.status.success(), "weir failed:\n{err}");
    err
}

fn slack_text(r: &Received) -> String {
    r.body["text"].as_str().unwrap_or_default().to_string()
}

/// Settles: what has not arrived by now is not coming from the last step.
fn settle() {
    std::thread::sleep(Duration::from_millis(900));
}

#[test]
fn an_alert_pages_once_after_for_repeats_after_repeat_interval_and_resolves_once() {
    let dir = tempfile::tempdir().unwrap();
    let slack = Recorder::start(vec![]);
    let hook = Recorder::start(vec![]);
    let route = format!(
        r#"
[route]
receiver = "slack"
group_by = ["alertname"]
group_wait = "200ms"
group_interval = "300ms"
repeat_interval = "3s"

[[route.routes]]
matchers = ['severity="page"']
receiver = "slack"
continue = true

[[route.routes]]
matchers = ['severity=~"page|ticket"']
receiver = "hook"

[receivers.slack]
type = "slack"
url = "{}"
link = "https://grafana.example/d/errors?service={{{{ alertname }}}}"

[receivers.hook]
type = "webhook"
url = "{}"
"#,
        slack.url, hook.url
    );
    let p = pipeline_with(dir.path(), "for = \"20s\"", &route);
    let mut weir = start(&p, &[]);
    let both = [("cart", 3), ("search", 4)];
    feed(&mut weir, 0, &both);
    feed(&mut weir, 1, &both); // [0,10) closes: pending since 10
    feed(&mut weir, 2, &both); // [10,20) closes: 10 s of 20
    settle();
    assert_eq!(
        slack.count() + hook.count(),
        0,
        "a pending alert pages nobody"
    );

    feed(&mut weir, 3, &both); // [20,30) closes: held 20 s, fires
    eventually(10, "the first page", || {
        slack.count() == 1 && hook.count() == 1
    });
    let page = &slack.received()[0];
    assert_eq!(slack_text(page), "[FIRING:2] high_errors");
    let att = &page.body["attachments"][0];
    assert_eq!(att["color"], "#E01E5A");
    let blocks = att["blocks"].to_string();
    assert!(blocks.contains("cart: 3 errors in 10 s"), "{blocks}");
    assert!(blocks.contains("search: 4 errors in 10 s"), "{blocks}");
    assert!(blocks.contains("`severity=page`"), "{blocks}");
    assert!(
        blocks.contains("https://grafana.example/d/errors?service=high_errors"),
        "{blocks}"
    );

    // Alertmanager's webhook JSON, version 4.
    let am = hook.received()[0].body.clone();
    assert_eq!(am["version"], "4");
    assert_eq!(am["status"], "firing");
    assert_eq!(am["receiver"], "hook");
    assert_eq!(
        am["groupLabels"],
        serde_json::json!({ "alertname": "high_errors" })
    );
    assert_eq!(am["commonLabels"]["severity"], "page");
    let alerts = am["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2);
    let cart = alerts
        .iter()
        .find(|a| a["labels"]["service"] == "cart")
        .unwrap();
    assert_eq!(cart["status"], "firing");
    assert_eq!(
        cart["startsAt"], "2023-11-14T22:13:50.000Z",
        "the end of the window it fired in"
    );
    assert_eq!(cart["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(cart["fingerprint"].as_str().unwrap().len(), 16);
    assert_eq!(cart["annotations"]["summary"], "cart: 3 errors in 10 s");

    feed(&mut weir, 4, &both); // still firing, same values: nothing new
    settle();
    assert_eq!(slack.count(), 1, "no page again before repeat_interval");

    eventually(10, "the repeat", || slack.count() == 2);
    let r = slack.received();
    assert!(
        r[1].at - r[0].at >= Duration::from_secs(3),
        "repeated after repeat_interval"
    );
    assert_eq!(slack_text(&r[1]), "[FIRING:2] high_errors");

    feed(&mut weir, 5, &[("cart", 0), ("search", 4)]); // [40,50) closes, both firing
    feed(&mut weir, 6, &[("cart", 0), ("search", 0)]); // [50,60): cart resolves
    eventually(10, "cart resolved", || {
        slack.count() == 3 && hook.count() >= 2
    });
    assert_eq!(slack_text(&slack.received()[2]), "[FIRING:1] high_errors");
    let am = hook.received().last().unwrap().body.clone();
    let cart = am["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["service"] == "cart")
        .unwrap();
    assert_eq!(cart["status"], "resolved");
    assert_eq!(cart["endsAt"], "2023-11-14T22:14:20.000Z");

    feed(&mut weir, 7, &[("cart", 0), ("search", 0)]); // [60,70): search resolves
    eventually(10, "all resolved", || slack.count() == 4);
    let last = &slack.received()[3];
    assert_eq!(slack_text(last), "[RESOLVED:1] high_errors");
    assert_eq!(last.body["attachments"][0]["color"], "#2EB67D");
    feed(&mut weir, 8, &[("cart", 0), ("search", 0)]);
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(
        slack.count(),
        4,
        "resolved once, and nothing firing repeats"
    );
    let err = finish(weir);
    assert!(err.contains("sent [FIRING:2] high_errors"), "{err}");
}

#[test]
fn silences_mute_matching_alerts_until_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    let slack = Recorder::start(vec![]);
    let port = free_port();
    let api = format!("http://127.0.0.1:{port}");
    let route = format!("[api]\naddress = \"127.0.0.1:{port}\"\n\n")
        + &slack_route(
            &slack.url,
            r#"group_by = ["alertname"]
group_wait = "100ms"
group_interval = "300ms"
repeat_interval = "1h""#,
        );
    let p = pipeline_with(dir.path(), "", &route);
    let mut weir_run = start(&p, &[]);
    let cli = |args: &[&str]| {
        let mut cmd = weir();
        cmd.arg("alerts").args(args).args(["--api", &api]);
        run(&mut cmd, b"", 30)
    };
    let mut added = None;
    eventually(20, "the admin API", || {
        let out = cli(&[
            "silence",
            "add",
            r#"service="cart""#,
            "--for",
            "1h",
            "--comment",
            "deploy",
        ]);
        if out.status.success() {
            added = Some(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        out.status.success()
    });
    let id = added.unwrap();
    assert_eq!(id.len(), 16, "{id}");
    let bad = cli(&["silence", "add", "service"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("not a matcher"), "{}", stderr(&bad));

    feed(&mut weir_run, 0, &[("cart", 5), ("search", 5)]);
    feed(&mut weir_run, 1, &[("cart", 5), ("search", 5)]); // both fire (for = 0)
    eventually(10, "the page for search", || slack.count() == 1);
    settle();
    let r = slack.received();
    assert_eq!(r.len(), 1);
    assert_eq!(slack_text(&r[0]), "[FIRING:1] high_errors");
    assert!(!r[0].body.to_string().contains("cart:"), "cart is silenced");

    let list = cli(&["list"]);
    let table = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(list.status.success(), "{}", stderr(&list));
    let cart = table
        .lines()
        .find(|l| l.contains("service=cart"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(cart.starts_with("firing (silenced)"), "{table}");
    let search = table
        .lines()
        .find(|l| l.contains("service=search"))
        .unwrap();
    assert!(search.starts_with("firing "), "{table}");
    let silences = String::from_utf8_lossy(&cli(&["silence", "list"]).stdout).to_string();
    assert!(
        silences.contains(&id) && silences.contains("active") && silences.contains("deploy"),
        "{silences}"
    );

    let out = cli(&["silence", "expire", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually(10, "cart paged once its silence ended", || {
        slack.count() == 2
    });
    assert!(slack.received()[1]
        .body
        .to_string()
        .contains("cart: 5 errors"));
    assert!(!cli(&["silence", "expire", "0000000000000000"])
        .status
        .success());
    finish(weir_run);
}

#[test]
fn a_restart_neither_pages_again_nor_forgets_a_pending_alert() {
    let dir = tempfile::tempdir().unwrap();
    let slack = Recorder::start(vec![]);
    let route = slack_route(
        &slack.url,
        r#"group_by = ["alertname", "service"]
group_wait = "100ms"
group_interval = "300ms"
repeat_interval = "1h""#,
    );
    let p = pipeline_with(dir.path(), "for = \"20s\"", &route);
    let mut first = start(&p, &[]);
    feed(&mut first, 0, &[("cart", 3), ("search", 0)]);
    feed(&mut first, 1, &[("cart", 3), ("search", 3)]); // cart pending since 10
    feed(&mut first, 2, &[("cart", 3), ("search", 3)]); // search pending since 20
    feed(&mut first, 3, &[("cart", 3), ("search", 3)]); // cart fires at 30
    eventually(10, "cart's page", || slack.count() == 1);
    assert!(slack.received()[0].body.to_string().contains("cart: 3"));
    settle(); // the state is saved within 250 ms
              // A crash, not a clean stop.
    signal(&first, libc::SIGKILL);
    let _ = wait_output(first, 10);
    assert!(dir.path().join("state/alerts.json").is_file());

    let mut second = start(&p, &[]);
    feed(&mut second, 3, &[("cart", 3), ("search", 3)]);
    feed(&mut second, 4, &[("cart", 3), ("search", 3)]); // [30,40) closes
                                                         // search was pending since 20 before the crash: 20 s have passed at 40.
                                                         // Started afresh it would only be pending now.
    eventually(10, "search's page", || slack.count() == 2);
    settle();
    let r = slack.received();
    assert_eq!(
        r.len(),
        2,
        "cart was not paged again: {:?}",
        r.iter().map(slack_text).collect::<Vec<_>>()
    );
    assert!(
        slack_text(&r[1]).contains("service=search"),
        "{}",
        slack_text(&r[1])
    );
    let err = finish(second);
    assert!(err.contains("2 alerts restored"), "{err}");
}

#[test]
fn a_notification_is_delivered_once_after_the_receiver_recovers() {
    let dir = tempfile::tempdir().unwrap();
    // Down twice, then rate-limited, then up.
    let slack = Recorder::start(vec![
        Reply::Status(500),
        Reply::Status(503),
        Reply::RetryAfter(1),
    ]);
    let route = slack_route(
        &slack.url,
        "group_wait = \"0s\"\ngroup_interval = \"200ms\"\nrepeat_interval = \"1h\"",
    );
    let p = pipeline_with(dir.path(), "", &route);
    let mut weir_run = start(&p, &[]);
    feed(&mut weir_run, 0, &[("cart", 3)]);
    feed(&mut weir_run, 1, &[("cart", 0)]);
    eventually(20, "delivery after the outage", || slack.count() == 4);
    std::thread::sleep(Duration::from_millis(1500));
    let r = slack.received();
    assert_eq!(r.len(), 4, "nothing sent again after the success");
    assert!(
        r[3].at - r[2].at >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    assert!(
        r.iter().all(|x| x.body == r[0].body),
        "the same notification each time"
    );
    let err = finish(weir_run);
    assert!(err.contains("answered 500"), "{err}");
    assert!(err.contains("retrying in"), "{err}");
    assert!(
        !err.contains(&slack.url),
        "the webhook URL is a secret and stays out of logs"
    );
}

#[test]
fn validate_reports_every_alerting_mistake_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = PIPELINE
        .replace("{rule}", "for = \"soon\"")
        .replace("errors >= 3", "errors >=")
        .replace(
            "{route}",
            r#"
[alerts.typo]
query = "erors"
condition = "x > 1"

[alerts.unknown_column]
query = "errors"
condition = "warnings > 1"
description = "{{ servce }} is failing"

[alerts.not_boolean]
query = "errors"
condition = "errors + 1"

[route]
receiver = "slak"
matchers = ['a']

[receivers.slack]
type = "slack"
url = "not a url"
"#,
        );
    let p = pipeline(dir.path(), &bad);
    let out = run(weir().args(["validate", "-c"]).arg(&p), b"", 60);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    let line = |needle: &str| -> usize {
        bad.lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle}"))
            + 1
    };
    for expected in [
        format!(":{}: [alerts.high_errors] condition:", line("errors >=")),
        format!(":{}: [alerts.high_errors] for:", line("soon")),
        format!(
            ":{}: [alerts.typo] query: no query named `erors` (did you mean `errors`?)",
            line("\"erors\"")
        ),
        format!(
            ":{}: [receivers.slack] url: `not a url` is not a URL",
            line("not a url")
        ),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
    assert!(
        err.contains("[route] route.matchers: `a` is not a matcher"),
        "{err}"
    );

    // Columns are checked once the other mistakes are fixed.
    let fixed = bad
        .replace("for = \"soon\"", "")
        .replace("errors >=", "errors >= 3")
        .replace("\"erors\"", "\"errors\"")
        .replace("receiver = \"slak\"\nmatchers = ['a']", "")
        .replace("not a url", "https://hooks.slack.example/services/T0/B0/x");
    let p = pipeline(dir.path(), &fixed);
    let out = run(weir().args(["validate", "-c"]).arg(&p), b"", 60);
    let err = stderr(&out);
    assert!(
        err.contains("[alerts.unknown_column] condition:") && err.contains("warnings"),
        "{err}"
    );
    assert!(
        err.contains("(the rows of `errors` have: window_start, service, errors)"),
        "{err}"
    );
    assert!(
        err.contains("[alerts.unknown_column] description: `servce` is not a column of `errors`"),
        "{err}"
    );
    assert!(
        err.contains("[alerts.not_boolean] condition: `errors + 1` is Int64, not a condition"),
        "{err}"
    );
}
