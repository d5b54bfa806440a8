//! Helpers for tests that run the real `weir` binary.
#![allow(dead_code)]

pub mod net;
pub mod tansu;
pub mod tls;

pub use net::free_port;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A bundled (or test-only) plugin, built by `scripts/build-plugins`.
pub fn plugin(name: &str) -> PathBuf {
    let dist = repo().join("plugins/dist");
    let file = format!("{name}.wasm");
    [dist.join(&file), dist.join("test").join(&file)]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("plugin {name} is missing: run scripts/build-plugins first"))
}

/// `weir` with a compiled-plugin cache shared by the tests.
pub fn weir() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    c.env("WEIR_CACHE_DIR", repo().join("target/test-plugin-cache"))
        .env("WEIR_LOG", "info")
        .env("NO_COLOR", "1");
    c
}

/// Runs to completion, failing the test after `secs`.
pub fn run(cmd: &mut Command, stdin: &[u8], secs: u64) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weir");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = wait_output(child, secs);
    writer.join().unwrap();
    out
}

pub fn wait_output(mut child: Child, secs: u64) -> Output {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "weir did not finish in {secs}s\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `weir plugin run PLUGIN [--config KEY=VALUE]... [EXTRA]...` over `input`.
pub fn plugin_run(plugin: &Path, config: &[&str], extra: &[&str], input: &[u8]) -> Output {
    let mut cmd = weir();
    cmd.args(["plugin", "run"]).arg(plugin).args(extra);
    for kv in config {
        cmd.args(["--config", kv]);
    }
    run(&mut cmd, input, 300)
}

/// Waits until `cond` holds, failing the test after `secs`.
pub fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Fluent forward message in Message mode: `[tag, time, {fields}]`.
pub fn fluent_message(tag: &str, fields: &[(&str, &str)]) -> Vec<u8> {
    let record: std::collections::HashMap<_, _> = fields.iter().copied().collect();
    rmp_serde::to_vec(&(tag, 1_700_000_000u32, record)).unwrap()
}

/// Pipeline TOML for an alert that fires within a second or two: a
/// generator's events counted per second and a rule on any count, routed
/// to `receiver` (the caller adds its `[receivers.NAME]`).
pub fn firing_alert(receiver: &str) -> String {
    format!(
        r#"
[sources.gen]
type = "generator"
rate = 100

[queries.count]
inputs = ["gen"]
sql = "SELECT tumble(interval '1 second') AS w, count(*) AS n FROM gen GROUP BY w"
idle_timeout = "1s"

[alerts.traffic]
query = "count"
condition = "n > 0"

[route]
receiver = "{receiver}"
group_wait = "100ms"
"#
    )
}

/// Waits until weir listens on each of `ports` (on 127.0.0.1).
pub fn listening(ports: &[u16]) {
    for &port in ports {
        eventually(30, &format!("a listener on port {port}"), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }
}

pub fn json_lines(bytes: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The JSON lines a file sink has written so far.
pub fn events_in(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read(path)
        .map(|b| json_lines(&b))
        .unwrap_or_default()
}

/// Stops a running weir as SIGTERM does and expects a clean exit.
pub fn stop(child: Child) {
    signal(&child, libc::SIGTERM);
    let out = wait_output(child, 60);
    assert!(out.status.success(), "{}", stderr(&out));
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A pipeline file in `dir` whose `{plugin:NAME}` placeholders point at
/// bundled plugins.
pub fn pipeline(dir: &Path, text: &str) -> PathBuf {
    let mut t = text.to_string();
    for name in ["level_filter", "parse", "redact", "sample", "hostile"] {
        t = t.replace(
            &format!("{{plugin:{name}}}"),
            &plugin(name).display().to_string(),
        );
    }
    let p = dir.join("pipeline.toml");
    std::fs::write(&p, t).unwrap();
    p
}

/// `n` JSON lines `{"i": k}`, with extra fields where `extra(k)` says.
pub fn numbered(n: usize, extra: impl Fn(usize) -> &'static str) -> String {
    (0..n)
        .map(|k| format!("{{\"i\":{k}{}}}\n", extra(k)))
        .collect()
}

/// Starts `weir run -c PIPELINE [EXTRA]...` in the background: stdin piped
/// for the test to feed, stderr kept for the summary, events in the
/// pipeline's own sinks.
pub fn start(pipeline: &Path, extra: &[&str]) -> Child {
    weir()
        .args(["run", "-c"])
        .arg(pipeline)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weir")
}

pub fn signal(child: &Child, sig: i32) {
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// A real HTTP server standing in for Slack or a webhook receiver: it
/// records every POST and answers from a script (then 200 OK).
pub struct Recorder {
    pub url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub path: String,
    pub body: serde_json::Value,
}

/// Serves `app` on `listener` from a thread of its own until the test ends.
pub fn serve(listener: std::net::TcpListener, app: axum::Router) {
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
}

/// One scripted answer.
#[derive(Clone, Copy, Debug)]
pub enum Reply {
    Status(u16),
    /// 429 Too Many Requests with `Retry-After: SECS`.
    RetryAfter(u64),
}

impl Recorder {
    pub fn start(script: Vec<Reply>) -> Recorder {
        Recorder::start_on(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), script)
    }

    /// A recorder on `listener`: a test can give weir the address of a
    /// receiver that is down, then bring it up.
    pub fn start_on(listener: std::net::TcpListener, script: Vec<Reply>) -> Recorder {
        use axum::extract::State;
        use axum::response::IntoResponse;
        type Shared = (
            std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
            std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<Reply>>>,
        );
        async fn answer(
            State((seen, script)): State<Shared>,
            uri: axum::http::Uri,
            body: axum::body::Bytes,
        ) -> axum::response::Response {
            let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            seen.lock().unwrap().push(Received {
                at: Instant::now(),
                path: uri.path().to_string(),
                body,
            });
            let code = |c: u16| axum::http::StatusCode::from_u16(c).unwrap();
            match script.lock().unwrap().pop_front() {
                None => "ok".into_response(),
                Some(Reply::Status(c)) => (code(c), "scripted").into_response(),
                Some(Reply::RetryAfter(s)) => {
                    (code(429), [("retry-after", s.to_string())], "slow down").into_response()
                }
            }
        }
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let seen = std::sync::Arc::default();
        let state: Shared = (
            std::sync::Arc::clone(&seen),
            std::sync::Arc::new(std::sync::Mutex::new(script.into())),
        );
        let app = axum::Router::new()
            .route("/{*path}", axum::routing::post(answer))
            .with_state(state);
        serve(listener, app);
        Recorder { url, seen }
    }

    pub fn received(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// A tmux server of the test's own running `cmd` in a 160x20 terminal,
/// killed when dropped.
pub struct Tmux(String);

impl Tmux {
    pub fn start(socket: &str, cmd: &str) -> Tmux {
        let t = Tmux(socket.to_string());
        let started = t.run(&[
            "new-session",
            "-d",
            "-s",
            "main",
            "-x",
            "160",
            "-y",
            "20",
            cmd,
        ]);
        assert!(
            started.status.success(),
            "{}",
            String::from_utf8_lossy(&started.stderr)
        );
        t
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.0])
            .args(args)
            .output()
            .expect("tmux (scripts/test installs it)")
    }

    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "main"]).stdout)
            .into_owned()
    }

    pub fn alive(&self) -> bool {
        self.run(&["has-session", "-t", "main"]).status.success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// A real Prometheus (Debian's package) scraping every second, killed when
/// dropped.
pub struct Prometheus {
    child: Child,
    pub url: String,
}

impl Prometheus {
    /// `scrape_configs` is the YAML list under `scrape_configs:`;
    /// `args` add flags (`--web.enable-remote-write-receiver`).
    pub fn start(dir: &Path, scrape_configs: &str, args: &[&str]) -> Prometheus {
        weir::install_tls_provider();
        let port = free_port();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!("global:\n  scrape_interval: 1s\nscrape_configs:\n{scrape_configs}"),
        )
        .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian's package; scripts/test installs it)");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Whether Prometheus accepts `q` as a query.
    pub fn valid(&self, q: &str) -> bool {
        reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", q)])
            .send()
            .and_then(|r| r.text())
            .is_ok_and(|t| t.contains("\"status\":\"success\""))
    }

    /// The results of an instant query: `(labels, value)`.
    pub fn results(&self, q: &str) -> Vec<(serde_json::Value, f64)> {
        let Ok(resp) = reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", q)])
            .send()
        else {
            return Vec::new();
        };
        let v: serde_json::Value = resp
            .text()
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        v["data"]["result"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .filter_map(|r| {
                        let value = r["value"][1].as_str()?.parse().ok()?;
                        Some((r["metric"].clone(), value))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value of an instant query with one result.
    pub fn query(&self, q: &str) -> Option<f64> {
        self.results(q).first().map(|(_, v)| *v)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
