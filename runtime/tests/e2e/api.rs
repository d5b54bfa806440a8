//! The admin API of a running pipeline: health, metrics scraped by a real
//! Prometheus (Debian's package), the pipeline description, taps, and the
//! bearer token, against the real binary.

use crate::common::*;
use std::io::Write;
use std::process::Stdio;

fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let client = reqwest::blocking::Client::new();
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

/// The value of the sample `name{labels}` in an exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// A pipeline in a new directory with `[api]` on a free port (plus
/// `api_extra`) and `body`: the directory, port, API URL and file.
fn with_api(api_extra: &str, body: &str) -> (tempfile::TempDir, u16, String, std::path::PathBuf) {
    weir::install_tls_provider();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let text = format!("[api]\naddress = \"127.0.0.1:{port}\"\n{api_extra}\n{body}");
    let p = pipeline(dir.path(), &text);
    (dir, port, format!("http://127.0.0.1:{port}"), p)
}

#[test]
fn metrics_health_description_and_taps_of_a_running_pipeline() {
    let (dir, port, api, p) = with_api(
        "token = \"${TEST_TOKEN}\"",
        r#"
[settings]
batch_timeout_ms = 10

[sources.app]
type = "stdin"

[transforms.warnings]
type = "wasm"
inputs = ["app"]
plugin = "{plugin:level_filter}"
config = { level = "warn" }

[queries.per_minute]
inputs = ["app"]
sql = "SELECT window_start, count(*) AS n FROM app GROUP BY tumble(interval '1 minute')"

[sinks.out]
type = "blackhole"
inputs = ["warnings", "per_minute"]

[alerts.flood]
query = "per_minute"
condition = "n > 1000000"

[receivers.console]
type = "stdout"
"#,
    );
    let mut weir_run = weir()
        .env("TEST_TOKEN", "s3cret")
        .args(["run", "-c"])
        .arg(&p)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut fed_bytes = 0;
    let mut feed_line = |text: &str| {
        fed_bytes += text.len();
        let stdin = weir_run.stdin.as_mut().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
    };
    let levels = |info: usize, warn: usize| {
        let mut text = String::new();
        for i in 0..info {
            text.push_str(&format!("{{\"level\":\"info\",\"i\":{i}}}\n"));
        }
        for i in 0..warn {
            text.push_str(&format!("{{\"level\":\"warn\",\"i\":{i}}}\n"));
        }
        text
    };

    // Health needs no token; it lists each component's state.
    let mut health = String::new();
    eventually(30, "the admin API", || {
        match reqwest::blocking::get(format!("{api}/health")) {
            Ok(r) => {
                health = r.text().unwrap();
                true
            }
            Err(_) => false,
        }
    });
    let h: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(h["components"]["warnings"], "running", "{health}");
    assert_eq!(
        (h["live"].as_bool(), h["ready"].as_bool()),
        (Some(true), Some(true)),
        "{health}"
    );

    // Everything else wants the token.
    let (status, body) = get(&format!("{api}/metrics"), None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    assert_eq!(get(&format!("{api}/metrics"), Some("wrong")).0, 401);

    feed_line(&levels(30, 20));
    let mut metrics = String::new();
    eventually(20, "the counters to reach the events sent", || {
        metrics = get(&format!("{api}/metrics"), Some("s3cret")).1;
        sample(
            &metrics,
            r#"weir_component_sent_events_total{component="warnings"}"#,
        ) == Some(20.0)
    });
    assert_eq!(
        sample(
            &metrics,
            r#"weir_component_received_events_total{component="warnings"}"#
        ),
        Some(50.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"weir_component_sent_events_total{component="app"}"#
        ),
        Some(50.0)
    );
    assert_eq!(
        sample(
            &metrics,
            r#"weir_component_received_events_total{component="out"}"#
        ),
        Some(20.0)
    );
    assert_eq!(
        sample(&metrics, r#"weir_component_up{component="warnings"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, r#"weir_queue_capacity_batches{component="out"}"#),
        Some(8.0)
    );

    // Real Prometheus scrapes it, with the token, and has the same values.
    let prom = Prometheus::start(
        dir.path(),
        &format!("  - job_name: weir\n    authorization:\n      credentials: s3cret\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"),
        &[],
    );
    let mut got = None;
    eventually(60, "Prometheus to scrape weir", || {
        got = prom.query(r#"weir_component_sent_events_total{component="warnings"}"#);
        got.is_some()
    });
    assert_eq!(got, Some(20.0));
    assert_eq!(
        prom.query(r#"up{job="weir"}"#),
        Some(1.0),
        "the scrape parsed"
    );
    assert_eq!(
        prom.query(r#"weir_component_received_events_total{component="out"}"#),
        Some(20.0)
    );

    // An event older than the open window is late for the query: counted
    // by reason.
    feed_line("{\"level\":\"info\",\"timestamp\":\"2000-01-01T00:00:00Z\"}\n");
    let mut metrics = String::new();
    eventually(20, "the late event to be counted", || {
        metrics = get(&format!("{api}/metrics"), Some("s3cret")).1;
        sample(
            &metrics,
            r#"weir_component_failures_total{component="per_minute",reason="late"}"#,
        ) == Some(1.0)
    });

    // Every query of the example Grafana dashboard is valid PromQL and
    // reads metrics weir exports.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("examples/grafana/weir-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            assert!(
                prom.valid(&expr.replace("$job", ".*")),
                "not valid PromQL: {expr}"
            );
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("weir_"))
            {
                let family = name.trim_end_matches("_total");
                assert!(
                    metrics.contains(&format!("# TYPE {family} ")),
                    "{name} is not exported:\n{metrics}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 15, "{checked}");
    drop(prom);

    // The pipeline as nodes.
    let (_, nodes) = get(&format!("{api}/pipeline"), Some("s3cret"));
    let nodes: serde_json::Value = serde_json::from_str(&nodes).unwrap();
    let warnings = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "warnings")
        .unwrap();
    assert_eq!(warnings["kind"], "transform");
    assert_eq!(warnings["inputs"], serde_json::json!(["app"]));

    // A tap sees what the plugin keeps, and ends at its limit.
    let tap = weir()
        .env("WEIR_API_TOKEN", "s3cret")
        .args(["tap", "warnings", "--limit", "5", "--api", &api])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sampled = weir()
        .env("WEIR_API_TOKEN", "s3cret")
        .args([
            "tap", "warnings", "--limit", "3", "--sample", "4", "--api", &api,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    feed_line(&levels(10, 12));
    let out = wait_output(tap, 30);
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 5, "{}", stderr(&out));
    assert!(lines.iter().all(|e| e["level"] == "warn"), "{lines:?}");
    assert_eq!(lines[0]["i"], 0);
    let out = wait_output(sampled, 30);
    let every_fourth: Vec<i64> = json_lines(&out.stdout)
        .iter()
        .map(|e| e["i"].as_i64().unwrap())
        .collect();
    assert_eq!(every_fourth, [0, 4, 8]);

    let bad = run(
        weir().args(["tap", "nope", "--api", &api, "--token", "s3cret"]),
        b"",
        30,
    );
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("no component `nope`"),
        "{}",
        stderr(&bad)
    );

    drop(weir_run.stdin.take());
    let out = wait_output(weir_run, 30);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn top_shows_moving_counters_in_a_terminal_and_quits_on_q() {
    let (_dir, port, api, p) = with_api(
        "",
        r#"
[sources.app]
type = "generator"
rate = 2000

[transforms.warnings]
type = "wasm"
inputs = ["app"]
plugin = "{plugin:level_filter}"
config = { level = "warn" }

[sinks.out]
type = "blackhole"
inputs = ["warnings"]
"#,
    );
    let weir_run = start(&p, &[]);
    eventually(30, "the admin API", || {
        reqwest::blocking::get(format!("{api}/health")).is_ok()
    });

    let cmd = format!(
        "{} top --interval 200ms --api {api}",
        env!("CARGO_BIN_EXE_weir")
    );
    let tmux = Tmux::start(&format!("weir-top-{port}"), &cmd);
    // The `app` row's OUT column, as the screen shows it.
    let out_of_app = |screen: &str| -> Option<u64> {
        let row = screen.lines().find(|l| l.starts_with("app "))?;
        row.split_whitespace().nth(6)?.parse().ok()
    };
    let mut first = None;
    eventually(20, "top to draw the components", || {
        first = out_of_app(&tmux.screen());
        first.is_some()
    });
    let screen = tmux.screen();
    assert!(
        screen.contains("COMPONENT") && screen.contains("PLUGIN"),
        "{screen}"
    );
    assert!(
        screen.lines().any(|l| l.starts_with("warnings")
            && l.contains("transform")
            && l.contains("µs/batch")),
        "{screen}"
    );
    eventually(20, "the counters to move", || {
        out_of_app(&tmux.screen()).is_some_and(|n| n > first.unwrap())
    });
    let rate: f64 = tmux
        .screen()
        .lines()
        .find(|l| l.starts_with("app "))
        .and_then(|l| l.split_whitespace().nth(4)?.parse().ok())
        .unwrap();
    assert!(
        rate > 500.0 && rate < 5000.0,
        "events/s out of app at rate 2000: {rate}"
    );

    tmux.run(&["send-keys", "-t", "main", "q"]);
    eventually(10, "top to quit on q", || !tmux.alive());

    // Not a terminal: plain lines.
    let mut plain = weir()
        .args(["top", "--interval", "200ms", "--api", &api])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    plain.kill().unwrap();
    let out = plain.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("app source running")),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no escape codes when piped");

    signal(&weir_run, libc::SIGTERM);
    let out = wait_output(weir_run, 30);
    assert!(out.status.success(), "{}", stderr(&out));
}
