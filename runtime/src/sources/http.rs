//! The `http` source (JSON lines, NDJSON or a JSON array on `path`, plus the
//! request shapes of Elasticsearch's `_bulk` and Loki's push API) and the
//! `prometheus_remote_write` source: HTTP servers whose requests become
//! events.
//!
//! A request is answered once its events are queued in the pipeline (a
//! full pipeline holds the answer back, so the shipper slows down). Bodies
//! are bounded before and after gzip, headers and bodies must arrive within
//! `read_timeout`, and every refusal says what was wrong in the protocol's
//! own terms: 401, 413, 415, 400 with a reason, 503 while stopping.

use super::net::{self, Net};
use crate::codec::timestamp::now_ns;
use crate::codec::{http_body, remote_write};
use crate::config::{HttpSource, RemoteWriteSource};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_layout::BatchBuf;

/// What every request handler needs.
struct Ctx {
    net: Net,
    token: Option<String>,
    timestamp_field: String,
    max_body_bytes: usize,
    read_timeout: Duration,
}

type Shared = State<Arc<Ctx>>;

pub fn run_http(net: Net, cfg: &HttpSource, read_timeout: Duration) {
    let ctx = Arc::new(Ctx {
        net: net.clone(),
        token: cfg.token.clone(),
        timestamp_field: cfg.timestamp_field.clone(),
        max_body_bytes: cfg.max_body_bytes,
        read_timeout,
    });
    let app = Router::new()
        .route(&cfg.path, post(json))
        .route("/_bulk", post(bulk))
        .route("/{index}/_bulk", post(bulk_into))
        .route("/loki/api/v1/push", post(loki))
        .with_state(ctx.clone());
    serve(ctx, &cfg.address, cfg.max_connections, app);
}

pub fn run_remote_write(net: Net, cfg: &RemoteWriteSource, read_timeout: Duration) {
    let ctx = Arc::new(Ctx {
        net: net.clone(),
        token: cfg.token.clone(),
        timestamp_field: String::new(),
        max_body_bytes: cfg.max_body_bytes,
        read_timeout,
    });
    let app = Router::new()
        .route(&cfg.path, post(remote_write))
        .with_state(ctx.clone());
    serve(ctx, &cfg.address, cfg.max_connections, app);
}

/// Serves `app` over HTTP/1.1 with a deadline on each request's headers,
/// so a client that trickles them in is cut off.
fn serve(ctx: Arc<Ctx>, address: &str, max_connections: usize, app: Router) {
    let runner = ctx.net.clone();
    runner.block_on(async move {
        let net = &ctx.net;
        let Some(listener) = net::bind(net, address).await else {
            return;
        };
        let timeout = ctx.read_timeout;
        net::serve_tcp(net, listener, max_connections, |stream, peer: SocketAddr| {
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            let net = net.clone();
            async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(timeout)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    r = conn.as_mut() => if let Err(e) = r {
                        if e.is_timeout() {
                            net.bad_input("slow_client", peer, "request headers too slow; closing");
                        } else if e.is_parse() {
                            net.bad_input("bad_request", peer, &format!("not HTTP: {e}"));
                        }
                    },
                    () = net.stopped() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            }
        })
        .await
    });
}

/// A refusal: counted, logged, and answered with `status` and the reason.
fn refuse(ctx: &Ctx, status: StatusCode, reason: &'static str, what: String) -> Response {
    ctx.net.bad_input(reason, "http", &what);
    let mut r = (status, what).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    r
}

/// Checks the token and content type, then reads the body and inflates
/// gzip; `passed` encodings are left to the decoder (remote write's snappy).
async fn body(
    ctx: &Ctx,
    headers: &HeaderMap,
    body: Body,
    types: &[&str],
    passed: &[&str],
) -> Result<Vec<u8>, Response> {
    if let Some(token) = &ctx.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            let what = "missing or wrong bearer token".to_string();
            return Err(refuse(ctx, StatusCode::UNAUTHORIZED, "unauthorized", what));
        }
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.is_empty() && !types.iter().any(|t| essence.eq_ignore_ascii_case(t)) {
        let what = format!(
            "content type `{essence}` is not one of {}",
            types.join(", ")
        );
        return Err(refuse(
            ctx,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type",
            what,
        ));
    }
    let max = ctx.max_body_bytes;
    let bytes = match tokio::time::timeout(ctx.read_timeout, axum::body::to_bytes(body, max)).await
    {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            let what = format!("body larger than max_body_bytes ({max}) or cut short");
            return Err(refuse(
                ctx,
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                what,
            ));
        }
        Err(_) => {
            let what = format!("body not received within {:?}", ctx.read_timeout);
            return Err(refuse(
                ctx,
                StatusCode::REQUEST_TIMEOUT,
                "slow_client",
                what,
            ));
        }
    };
    crate::topology::Stats::add(&ctx.net.stats().bytes_in, bytes.len());
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    match encoding {
        "identity" | "" => Ok(bytes.into()),
        e if passed.contains(&e) => Ok(bytes.into()),
        "gzip" | "x-gzip" => match gunzip(&bytes, max) {
            Ok(body) => Ok(body),
            Err(Inflate::TooLarge) => {
                let what = format!("body inflates past max_body_bytes ({max})");
                Err(refuse(
                    ctx,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    what,
                ))
            }
            Err(Inflate::Invalid(e)) => {
                let what = format!("invalid gzip body: {e}");
                Err(refuse(ctx, StatusCode::BAD_REQUEST, "bad_gzip", what))
            }
        },
        other => {
            let what = format!(
                "content encoding `{other}` is not gzip{}",
                passed
                    .iter()
                    .map(|p| format!(" or {p}"))
                    .collect::<String>()
            );
            Err(refuse(
                ctx,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content_encoding",
                what,
            ))
        }
    }
}

enum Inflate {
    TooLarge,
    Invalid(std::io::Error),
}

/// Inflates at most `max` bytes: a small bomb stays small.
fn gunzip(bytes: &Bytes, max: usize) -> Result<Vec<u8>, Inflate> {
    let mut out = Vec::new();
    let mut inflate = flate2::read::MultiGzDecoder::new(&bytes[..]).take(max as u64 + 1);
    inflate.read_to_end(&mut out).map_err(Inflate::Invalid)?;
    if out.len() > max {
        return Err(Inflate::TooLarge);
    }
    Ok(out)
}

/// Queues a request's events; 503 when the pipeline is stopping.
async fn queue(ctx: &Ctx, batch: BatchBuf) -> Result<(), Response> {
    ctx.net
        .send(batch)
        .await
        .map_err(|_| (StatusCode::SERVICE_UNAVAILABLE, "weir is stopping").into_response())
}

const JSON_TYPES: &[&str] = &[
    "application/json",
    "application/x-ndjson",
    "application/jsonlines",
    "application/x-jsonlines",
    "text/plain",
];

async fn json(State(ctx): Shared, headers: HeaderMap, raw: Body) -> Response {
    let bytes = match body(&ctx, &headers, raw, JSON_TYPES, &[]).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut batch = BatchBuf::new();
    let d = http_body::decode_json(
        &bytes,
        &ctx.timestamp_field,
        now_ns(),
        &|_| Ok(0),
        &mut batch,
    );
    if d.errors > 0 {
        let first = d.first_error.as_deref().unwrap_or("");
        let what = format!(
            "{} lines were not JSON objects (kept with `_error`); first: {first}",
            d.errors
        );
        ctx.net.bad_input("bad_event", "http", &what);
    }
    if let Err(r) = queue(&ctx, batch).await {
        return r;
    }
    let answer = serde_json::json!({ "events": d.events, "errors": d.errors });
    (StatusCode::OK, axum::Json(answer)).into_response()
}

async fn bulk(State(ctx): Shared, headers: HeaderMap, raw: Body) -> Response {
    bulk_request(ctx, None, headers, raw).await
}

async fn bulk_into(
    State(ctx): Shared,
    Path(index): Path<String>,
    headers: HeaderMap,
    raw: Body,
) -> Response {
    bulk_request(ctx, Some(index), headers, raw).await
}

async fn bulk_request(
    ctx: Arc<Ctx>,
    index: Option<String>,
    headers: HeaderMap,
    raw: Body,
) -> Response {
    let started = Instant::now();
    let bytes = match body(&ctx, &headers, raw, JSON_TYPES, &[]).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut batch = BatchBuf::new();
    let items = match http_body::decode_es_bulk(
        &bytes,
        index.as_deref(),
        &ctx.timestamp_field,
        now_ns(),
        &|_| Ok(0),
        &mut batch,
    ) {
        Ok(items) => items,
        Err(e) => return refuse(&ctx, StatusCode::BAD_REQUEST, "bad_bulk", e),
    };
    let refused = items.iter().filter(|i| i.status >= 300).count();
    if refused > 0 {
        let what = format!("{refused} bulk items refused");
        ctx.net.bad_input("bulk_item", "http", &what);
    }
    if let Err(r) = queue(&ctx, batch).await {
        return r;
    }
    let took = started.elapsed().as_millis() as u64;
    let answer = http_body::es_bulk_response(&items, took);
    ([(header::CONTENT_TYPE, "application/json")], answer).into_response()
}

async fn loki(State(ctx): Shared, headers: HeaderMap, raw: Body) -> Response {
    let bytes = match body(&ctx, &headers, raw, &["application/json"], &[]).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut batch = BatchBuf::new();
    if let Err(e) = http_body::decode_loki_push(&bytes, now_ns(), &|_| Ok(0), &mut batch) {
        return refuse(&ctx, StatusCode::BAD_REQUEST, "bad_push", e);
    }
    match queue(&ctx, batch).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}

async fn remote_write(State(ctx): Shared, headers: HeaderMap, raw: Body) -> Response {
    let bytes = match body(
        &ctx,
        &headers,
        raw,
        &["application/x-protobuf"],
        &["snappy"],
    )
    .await
    {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut batch = BatchBuf::new();
    match remote_write::decode(&bytes, ctx.max_body_bytes, &mut batch) {
        Ok(d) => {
            if d.skipped > 0 {
                let what = format!("{} series without __name__ skipped", d.skipped);
                ctx.net.bad_input("no_name", "remote write", &what);
            }
        }
        // 400: Prometheus drops the request rather than retrying it forever.
        Err(e) => return refuse(&ctx, StatusCode::BAD_REQUEST, "bad_write", e.to_string()),
    }
    match queue(&ctx, batch).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}
