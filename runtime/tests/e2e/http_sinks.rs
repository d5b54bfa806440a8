//! The HTTP sinks against a local server that speaks each API's requests
//! and errors: Elasticsearch's `_bulk` with per-item failures, Loki's push
//! with a failing first try, a generic endpoint with auth and gzip, and an
//! endpoint that is down and then comes up.

use crate::common::*;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the server got.
#[derive(Clone, Debug)]
struct Request {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Handler = Box<dyn FnMut(&Request) -> (u16, String) + Send>;

/// A real HTTP server on `port` whose answers come from `handler`.
struct Api {
    seen: Arc<Mutex<Vec<Request>>>,
}

impl Api {
    fn start(listener: std::net::TcpListener, handler: Handler) -> Api {
        use axum::response::IntoResponse;
        let seen: Arc<Mutex<Vec<Request>>> = Arc::default();
        let handler = Arc::new(Mutex::new(handler));
        let (s, h) = (seen.clone(), handler.clone());
        let answer =
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (seen, handler) = (s.clone(), h.clone());
                async move {
                    let req = Request {
                        path: uri.path().to_string(),
                        headers: headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect(),
                        body: body.to_vec(),
                    };
                    let (status, text) = (handler.lock().unwrap())(&req);
                    seen.lock().unwrap().push(req);
                    let code = axum::http::StatusCode::from_u16(status).unwrap();
                    (code, [("content-type", "application/json")], text).into_response()
                }
            };
        serve(
            listener,
            axum::Router::new().route("/{*path}", axum::routing::post(answer)),
        );
        Api { seen }
    }

    fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

fn bind() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// 2023-11-14T22:13:20Z, in milliseconds.
const T0: i64 = 1_700_000_000_000;

#[test]
fn elasticsearch_loki_and_http_sinks_speak_their_apis_and_retry() {
    let dir = tempfile::tempdir().unwrap();

    // Elasticsearch: the first request is answered 503 as a whole; then
    // each item by its document: `fail = 400` is refused for good, `fail =
    // 429` is refused once and taken when sent again.
    let (es_listener, es_port) = bind();
    let mut tries_429 = 0;
    let mut first = true;
    let es = Api::start(
        es_listener,
        Box::new(move |req| {
            if std::mem::take(&mut first) {
                return (503, "{\"error\":\"unavailable\"}".into());
            }
            let text = String::from_utf8_lossy(&req.body).into_owned();
            let lines: Vec<&str> = text.lines().collect();
            let mut items = Vec::new();
            let mut errors = false;
            for pair in lines.chunks(2) {
                let doc: serde_json::Value = serde_json::from_str(pair[1]).unwrap();
                let status = match doc["fail"].as_str() {
                    Some("400") => 400,
                    Some("429") if tries_429 == 0 => {
                        tries_429 += 1;
                        429
                    }
                    _ => 201,
                };
                errors |= status != 201;
                let error = match status {
                    400 => {
                        serde_json::json!({"type": "mapper_parsing_exception", "reason": "failed to parse field [n]"})
                    }
                    429 => serde_json::json!({"type": "es_rejected_execution_exception"}),
                    _ => serde_json::Value::Null,
                };
                items.push(serde_json::json!({"index": {"status": status, "error": error}}));
            }
            (
                200,
                serde_json::json!({"took": 1, "errors": errors, "items": items}).to_string(),
            )
        }),
    );

    // Loki: 500 first, then 204.
    let (loki_listener, loki_port) = bind();
    let mut loki_first = true;
    let loki = Api::start(
        loki_listener,
        Box::new(move |_| match std::mem::take(&mut loki_first) {
            true => (500, "ingester unavailable".into()),
            false => (204, String::new()),
        }),
    );

    // A generic collector that wants a token.
    let (http_listener, http_port) = bind();
    let collector = Api::start(
        http_listener,
        Box::new(|req| match req.header("authorization") {
            Some("Bearer s3cret") => (200, "{}".into()),
            _ => (401, "no".into()),
        }),
    );

    let p = pipeline(
        dir.path(),
        &format!(
            r#"
[sources.app]
type = "stdin"

[sinks.es]
type = "elasticsearch"
inputs = ["app"]
endpoint = "http://127.0.0.1:{es_port}"
index = "logs-{{{{ service }}}}-%Y.%m.%d"

[sinks.loki]
type = "loki"
inputs = ["app"]
endpoint = "http://127.0.0.1:{loki_port}"
labels = {{ job = "weir", service = "{{{{ service }}}}" }}
line_field = "msg"
tenant_id = "team-a"

[sinks.collector]
type = "http"
inputs = ["app"]
uri = "http://127.0.0.1:{http_port}/ingest"
token = "s3cret"
compression = "gzip"
"#
        ),
    );
    let input: String = [
        (0, "api", "ok", ""),
        (1, "api", "bad field", "400"),
        (2, "db", "busy", "429"),
        (3, "db", "ok again", ""),
    ]
    .iter()
    .map(|(i, svc, msg, fail)| {
        format!(
            "{{\"timestamp\":{},\"service\":\"{svc}\",\"msg\":\"{msg}\",\"fail\":\"{fail}\",\"n\":{i}}}\n",
            T0 + i * 1000
        )
    })
    .collect();
    let out = run(weir().args(["run", "-c"]).arg(&p), input.as_bytes(), 120);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");

    // Elasticsearch: 503 → whole batch again; then the 429 item alone.
    let reqs = es.requests();
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    assert!(reqs.iter().all(|r| r.path == "/_bulk"));
    assert_eq!(reqs[0].body, reqs[1].body);
    let retried = String::from_utf8_lossy(&reqs[2].body).into_owned();
    assert_eq!(retried.lines().count(), 2, "{retried}");
    assert!(retried.contains("\"busy\""), "{retried}");
    let first_try = String::from_utf8_lossy(&reqs[1].body).into_owned();
    assert!(
        first_try.starts_with("{\"index\":{\"_index\":\"logs-api-2023.11.14\"}}\n"),
        "{first_try}"
    );
    assert_eq!(reqs[1].header("content-type"), Some("application/x-ndjson"));
    assert!(log.contains("mapper_parsing_exception"), "{log}");

    // Loki: the same push twice (500, then taken), streams by service.
    let reqs = loki.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0].body, reqs[1].body);
    assert_eq!(reqs[1].header("x-scope-orgid"), Some("team-a"));
    let push: serde_json::Value = serde_json::from_slice(&reqs[1].body).unwrap();
    let mut streams = push["streams"].as_array().unwrap().clone();
    streams.sort_by_key(|s| s["stream"]["service"].as_str().unwrap().to_string());
    assert_eq!(
        streams[0]["stream"],
        serde_json::json!({"job": "weir", "service": "api"})
    );
    let ns = |i: i64| ((T0 + i * 1000) * 1_000_000).to_string();
    assert_eq!(
        streams[1]["values"],
        serde_json::json!([[ns(2), "busy"], [ns(3), "ok again"]])
    );

    // The collector: gzip NDJSON with the token.
    let reqs = collector.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].path, "/ingest");
    assert_eq!(reqs[0].header("content-encoding"), Some("gzip"));
    let lines = json_lines(&gunzip(&reqs[0].body));
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[3]["msg"], "ok again");
}

#[test]
fn a_dead_endpoint_is_retried_until_it_is_up_and_given_up_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (listener, port) = bind();
    drop(listener); // nothing listens yet
    let p = pipeline(
        dir.path(),
        &format!(
            r#"
[sources.app]
type = "stdin"

[sinks.hook]
type = "http"
inputs = ["app"]
uri = "http://127.0.0.1:{port}/hook"
encoding = "json"
"#
        ),
    );
    let mut weir = start(&p, &[]);
    let mut stdin = weir.stdin.take().unwrap();
    stdin.write_all(b"{\"n\":1}\n{\"n\":2}\n").unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    // The endpoint comes up: the waiting batch is delivered.
    let api = Api::start(
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap(),
        Box::new(|_| (200, "{}".into())),
    );
    eventually(
        60,
        "the batch to be delivered once the endpoint is up",
        || !api.requests().is_empty(),
    );
    let body: serde_json::Value = serde_json::from_slice(&api.requests()[0].body).unwrap();
    assert_eq!(body, serde_json::json!([{"n": 1}, {"n": 2}]));
    drop(stdin);
    let out = wait_output(weir, 60);
    assert!(out.status.success(), "{}", stderr(&out));

    // Down for good: a stopping pipeline tries a few more times, says
    // what was not delivered, and exits.
    let (listener, port) = bind();
    drop(listener);
    let p = pipeline(
        dir.path(),
        &std::fs::read_to_string(&p)
            .unwrap()
            .replace(&api_port(&p), &port.to_string()),
    );
    let mut weir = start(&p, &[]);
    let mut stdin = weir.stdin.take().unwrap();
    stdin.write_all(b"{\"n\":3}\n").unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    signal(&weir, libc::SIGTERM);
    let out = wait_output(weir, 60);
    let log = stderr(&out);
    assert!(log.contains("1 events not delivered"), "{log}");
}

/// The port in a pipeline's `uri`.
fn api_port(p: &std::path::Path) -> String {
    let text = std::fs::read_to_string(p).unwrap();
    let at = text.find("127.0.0.1:").unwrap() + "127.0.0.1:".len();
    text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect()
}
