//! The `http` source (JSON lines, NDJSON or a JSON array on `path`, plus the
//! request shapes of Elasticsearch's `_bulk` and Loki's push API) and the
//! `prometheus_remote_write` source: HTTP servers whose requests become
//! events.
//!
//! A request is answered once every sink (or its disk buffer) accepted its
//! events, so a client that retries what was not answered loses nothing to
//! a crash (`acknowledgements = false`: once they are queued). A full
//! pipeline holds the answer back, so the shipper slows down. Bodies
//! are bounded before and after gzip, headers and bodies must arrive within
//! `read_timeout`, and every refusal says what was wrong in the protocol's
//! own terms: 401, 413, 415, 400 with a reason, 503 while stopping.

use super::component::{BuildContext, Job, Source};
use super::net::{self, Held, Net};
use super::Batcher;
use crate::codec::http_body::{self, BodyError};
use crate::codec::remote_write;
use crate::codec::timestamp::now_ns;
use crate::config::{HttpSource, RemoteWriteSource};
use crate::topology::Shutdown;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures_util::StreamExt;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use weir_layout::BatchBuf;

/// What every request handler needs.
struct Ctx {
    net: Net,
    token: Option<String>,
    timestamp_field: String,
    max_body_bytes: usize,
    max_decoded_bytes: usize,
    acknowledgements: bool,
}

type Shared = State<Arc<Ctx>>;
/// The client's address, put in each request by [`serve`].
type Peer = ConnectInfo<SocketAddr>;

/// Bodies larger than this are inflated and decoded on a blocking thread,
/// so that one large body does not hold up the other clients' requests.
const DECODE_APART: usize = 256 << 10;

impl Source for HttpSource {
    fn build(&self, cx: &mut BuildContext<'_>, out: Batcher, shutdown: Shutdown) -> Option<Job> {
        let net = cx.listener(&self.listen(), out, shutdown);
        cx.check_path(&self.path);
        let cfg = self.clone();
        Some(Box::new(move || run_http(net, &cfg)))
    }
}

pub fn run_http(net: Net, cfg: &HttpSource) {
    let ctx = Arc::new(Ctx {
        net: net.clone(),
        token: cfg.token.clone(),
        timestamp_field: cfg.timestamp_field.clone(),
        max_body_bytes: cfg.max_body_bytes,
        max_decoded_bytes: cfg.max_decoded_bytes,
        acknowledgements: cfg.acknowledgements,
    });
    let app = Router::new()
        .route(&cfg.path, post(json))
        .route("/_bulk", post(bulk))
        .route("/{index}/_bulk", post(bulk_into))
        .route("/loki/api/v1/push", post(loki))
        .with_state(ctx.clone());
    serve(ctx, &cfg.address, app);
}

impl Source for RemoteWriteSource {
    fn build(&self, cx: &mut BuildContext<'_>, out: Batcher, shutdown: Shutdown) -> Option<Job> {
        let net = cx.listener(&self.listen(), out, shutdown);
        cx.check_path(&self.path);
        let cfg = self.clone();
        Some(Box::new(move || run_remote_write(net, &cfg)))
    }
}

pub fn run_remote_write(net: Net, cfg: &RemoteWriteSource) {
    let ctx = Arc::new(Ctx {
        net: net.clone(),
        token: cfg.token.clone(),
        timestamp_field: String::new(),
        max_body_bytes: cfg.max_body_bytes,
        max_decoded_bytes: cfg.max_decoded_bytes,
        acknowledgements: cfg.acknowledgements,
    });
    let app = Router::new()
        .route(&cfg.path, post(remote_write))
        .with_state(ctx.clone());
    serve(ctx, &cfg.address, app);
}

/// Serves `app` over HTTP/1.1 with a deadline on each request's headers
/// (which also closes a kept-alive connection that sends no next request),
/// so a client that trickles them in, or idles, is cut off.
fn serve(ctx: Arc<Ctx>, address: &str, app: Router) {
    let runner = ctx.net.clone();
    runner.block_on(async move {
        let net = &ctx.net;
        let Some(listener) = net::bind(net, address).await else {
            return;
        };
        let timeout = net.limits.read_timeout;
        let each = net.clone();
        net::serve_tcp(net, listener, move |stream, peer: SocketAddr| {
            let app = app.clone();
            let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let mut app = app.clone();
                tower_service::Service::call(&mut app, req)
            });
            let net = each.clone();
            async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(timeout)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    r = conn.as_mut() => if let Err(e) = r {
                        if e.is_timeout() {
                            net.bad_input("slow_client", peer, "request headers not whole within read_timeout; closing");
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

/// A refusal: counted, logged with the client's address, and answered with
/// `status` and the reason.
fn refuse(
    ctx: &Ctx,
    peer: SocketAddr,
    status: StatusCode,
    reason: &'static str,
    what: String,
) -> Response {
    ctx.net.bad_input(reason, peer, &what);
    let mut r = (status, what).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    r
}

/// A request's body, read and inflated, with what it holds of the source's
/// byte budget.
struct Request {
    peer: SocketAddr,
    bytes: Vec<u8>,
    held: Held,
}

/// Checks the token and content type, then reads the body (within
/// `max_body_bytes`, `read_timeout` and the source's byte budget) and
/// inflates gzip; `passed` encodings are left to the decoder (remote
/// write's snappy).
async fn body(
    ctx: &Arc<Ctx>,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Body,
    types: &[&str],
    passed: &[&str],
) -> Result<Request, Response> {
    if let Some(token) = &ctx.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            let what = "missing or wrong bearer token".to_string();
            return Err(refuse(
                ctx,
                peer,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                what,
            ));
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
        let status = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return Err(refuse(ctx, peer, status, "content_type", what));
    }
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity");
    let gzip = match encoding {
        "identity" | "" => false,
        e if passed.contains(&e) => false,
        "gzip" | "x-gzip" => true,
        other => {
            let also: String = passed.iter().map(|p| format!(" or {p}")).collect();
            let what = format!("content encoding `{other}` is not gzip{also}");
            let status = StatusCode::UNSUPPORTED_MEDIA_TYPE;
            return Err(refuse(ctx, peer, status, "content_encoding", what));
        }
    };
    let (bytes, mut held) = read_body(ctx, peer, headers, body).await?;
    crate::topology::Stats::add(&ctx.net.stats().bytes_in, bytes.len());
    if !gzip {
        return Ok(Request { peer, bytes, held });
    }
    let max = ctx.max_body_bytes;
    let inflated = apart(bytes.len(), move || gunzip(&bytes, max)).await;
    match inflated {
        // The inflated body is held out of the budget too, until decoded.
        Ok(bytes) if !held.set(bytes.len()) => Err(busy(ctx, peer, "an inflated request body")),
        Ok(bytes) => Ok(Request { peer, bytes, held }),
        Err(Inflate::TooLarge) => {
            let what = format!("body inflates past max_body_bytes ({max})");
            Err(refuse(
                ctx,
                peer,
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                what,
            ))
        }
        Err(Inflate::Invalid(e)) => {
            let what = format!("invalid gzip body: {e}");
            Err(refuse(ctx, peer, StatusCode::BAD_REQUEST, "bad_gzip", what))
        }
    }
}

/// Reads the body as it arrives, refusing it as soon as it passes
/// `max_body_bytes` (413, told by `Content-Length` before a byte is read),
/// the source's byte budget (503, try again), or `read_timeout` (408); a
/// body cut short is a bad request (400).
async fn read_body(
    ctx: &Ctx,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Vec<u8>, Held), Response> {
    let max = ctx.max_body_bytes;
    let too_large = |ctx: &Ctx| {
        let what = format!("body larger than max_body_bytes ({max})");
        refuse(ctx, peer, StatusCode::PAYLOAD_TOO_LARGE, "too_large", what)
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large(ctx));
    }
    let mut held = ctx.net.limits.buffered.hold();
    let mut out = Vec::with_capacity(declared.unwrap_or(0));
    if !held.set(out.capacity()) {
        return Err(busy(ctx, peer, "a request body"));
    }
    let timeout = ctx.net.limits.read_timeout;
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut frames = body.into_data_stream();
    loop {
        let frame = tokio::select! {
            f = frames.next() => f,
            () = &mut deadline => {
                let what = format!("body not whole within read_timeout ({timeout:?})");
                return Err(refuse(ctx, peer, StatusCode::REQUEST_TIMEOUT, "slow_client", what));
            }
        };
        match frame {
            None => return Ok((out, held)),
            Some(Ok(bytes)) => {
                let len = out.len() + bytes.len();
                if len > max {
                    return Err(too_large(ctx));
                }
                if !held.set(len.max(out.capacity())) {
                    return Err(busy(ctx, peer, "a request body"));
                }
                out.extend_from_slice(&bytes);
            }
            Some(Err(e)) => {
                let what = format!(
                    "body cut short after {} bytes: {}",
                    out.len(),
                    net::error_chain(&e)
                );
                return Err(refuse(
                    ctx,
                    peer,
                    StatusCode::BAD_REQUEST,
                    "truncated",
                    what,
                ));
            }
        }
    }
}

/// 503 with `Retry-After`: the source's byte budget is held by other
/// requests and connections.
fn busy(ctx: &Ctx, peer: SocketAddr, what: &str) -> Response {
    ctx.net.over_budget(peer, what);
    let max = ctx.net.limits.buffered.max();
    let what = format!("busy: the source holds max_buffered_bytes ({max}); retry");
    let mut r = (StatusCode::SERVICE_UNAVAILABLE, what).into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}

/// Runs `f` on a blocking thread when `size` says it may take a while.
async fn apart<T: Send + 'static>(size: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    if size < DECODE_APART {
        return f();
    }
    let task = tokio::task::spawn_blocking(f);
    match task.await {
        Ok(t) => t,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

enum Inflate {
    TooLarge,
    Invalid(std::io::Error),
}

/// Inflates at most `max` bytes: a small bomb stays small.
fn gunzip(bytes: &[u8], max: usize) -> Result<Vec<u8>, Inflate> {
    let mut out = Vec::new();
    let mut inflate = flate2::read::MultiGzDecoder::new(bytes).take(max as u64 + 1);
    inflate.read_to_end(&mut out).map_err(Inflate::Invalid)?;
    if out.len() > max {
        return Err(Inflate::TooLarge);
    }
    Ok(out)
}

/// Decodes a request's body on a blocking thread if it is large, and
/// moves what it holds of the budget from the body to its events; 503 when
/// the events do not fit the budget.
async fn decode<T: Send + 'static>(
    ctx: &Arc<Ctx>,
    req: Request,
    f: impl FnOnce(&Ctx, &[u8], &mut BatchBuf) -> T + Send + 'static,
) -> Result<(T, BatchBuf, Held), Response> {
    let Request {
        peer,
        bytes,
        mut held,
    } = req;
    let c = ctx.clone();
    let (out, batch) = apart(bytes.len(), move || {
        let mut batch = BatchBuf::new();
        let out = f(&c, &bytes, &mut batch);
        (out, batch)
    })
    .await;
    if !held.set(batch.byte_len()) {
        return Err(busy(ctx, peer, "the events of a request"));
    }
    Ok((out, batch, held))
}

/// Queues a request's events and, with `acknowledgements`, waits until
/// every sink accepted them; 503 when the pipeline is stopping or a sink
/// failed them (the client retries). What they held of the budget is let
/// go once they are in the pipeline.
async fn queue(ctx: &Ctx, batch: BatchBuf, held: Held) -> Result<(), Response> {
    let unavailable = |what| (StatusCode::SERVICE_UNAVAILABLE, what).into_response();
    if !ctx.acknowledgements || batch.is_empty() {
        let queued = ctx.net.send(batch).await;
        drop(held);
        return queued.map_err(|_| unavailable("weir is stopping"));
    }
    let (tx, accepted) = tokio::sync::oneshot::channel();
    let ack = crate::topology::Ack::new(Box::new(move |ok| {
        let _ = tx.send(ok);
    }));
    let queued = ctx.net.send_acked(batch, vec![ack]).await;
    drop(held);
    queued.map_err(|_| unavailable("weir is stopping"))?;
    match accepted.await {
        Ok(true) => Ok(()),
        _ => Err(unavailable("the events were not delivered; retry")),
    }
}

/// 413 for a body that decodes to more than `max_decoded_bytes`, else 400.
fn refuse_body(ctx: &Ctx, peer: SocketAddr, reason: &'static str, e: BodyError) -> Response {
    match e {
        BodyError::OverBudget(o) => refuse(
            ctx,
            peer,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            o.to_string(),
        ),
        BodyError::Invalid(what) => refuse(ctx, peer, StatusCode::BAD_REQUEST, reason, what),
    }
}

const JSON_TYPES: &[&str] = &[
    "application/json",
    "application/x-ndjson",
    "application/jsonlines",
    "application/x-jsonlines",
    "text/plain",
];

async fn json(
    State(ctx): Shared,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    raw: Body,
) -> Response {
    let req = match body(&ctx, peer, &headers, raw, JSON_TYPES, &[]).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let decoded = decode(&ctx, req, |ctx, bytes, batch| {
        let ts = &ctx.timestamp_field;
        http_body::decode_json(
            bytes,
            ts,
            now_ns(),
            &|_| Ok(0),
            ctx.max_decoded_bytes,
            batch,
        )
    });
    let (d, batch, held) = match decoded.await {
        Ok((Ok(d), batch, held)) => (d, batch, held),
        Ok((Err(e), ..)) => return refuse_body(&ctx, peer, "bad_event", e.into()),
        Err(r) => return r,
    };
    if d.errors > 0 {
        let first = d.first_error.as_deref().unwrap_or("");
        let what = format!(
            "{} lines were not JSON objects (kept with `_error`); first: {first}",
            d.errors
        );
        ctx.net.bad_input("bad_event", peer, &what);
    }
    if let Err(r) = queue(&ctx, batch, held).await {
        return r;
    }
    let answer = serde_json::json!({ "events": d.events, "errors": d.errors });
    (StatusCode::OK, axum::Json(answer)).into_response()
}

async fn bulk(State(ctx): Shared, peer: Peer, headers: HeaderMap, raw: Body) -> Response {
    bulk_request(ctx, peer, None, headers, raw).await
}

async fn bulk_into(
    State(ctx): Shared,
    peer: Peer,
    Path(index): Path<String>,
    headers: HeaderMap,
    raw: Body,
) -> Response {
    bulk_request(ctx, peer, Some(index), headers, raw).await
}

async fn bulk_request(
    ctx: Arc<Ctx>,
    ConnectInfo(peer): Peer,
    index: Option<String>,
    headers: HeaderMap,
    raw: Body,
) -> Response {
    let started = Instant::now();
    let req = match body(&ctx, peer, &headers, raw, JSON_TYPES, &[]).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let decoded = decode(&ctx, req, move |ctx, bytes, batch| {
        let (ts, max) = (&ctx.timestamp_field, ctx.max_decoded_bytes);
        let index = index.as_deref();
        http_body::decode_es_bulk(bytes, index, ts, now_ns(), &|_| Ok(0), max, batch)
    });
    let (items, batch, held) = match decoded.await {
        Ok((Ok(items), batch, held)) => (items, batch, held),
        Ok((Err(e), ..)) => return refuse_body(&ctx, peer, "bad_bulk", e),
        Err(r) => return r,
    };
    let refused = items.iter().filter(|i| i.status >= 300).count();
    if refused > 0 {
        let what = format!("{refused} bulk items refused");
        ctx.net.bad_input("bulk_item", peer, &what);
    }
    if let Err(r) = queue(&ctx, batch, held).await {
        return r;
    }
    let took = started.elapsed().as_millis() as u64;
    let answer = http_body::es_bulk_response(&items, took);
    ([(header::CONTENT_TYPE, "application/json")], answer).into_response()
}

async fn loki(
    State(ctx): Shared,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    raw: Body,
) -> Response {
    let req = match body(&ctx, peer, &headers, raw, &["application/json"], &[]).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let decoded = decode(&ctx, req, |ctx, bytes, batch| {
        http_body::decode_loki_push(bytes, now_ns(), &|_| Ok(0), ctx.max_decoded_bytes, batch)
    });
    let (batch, held) = match decoded.await {
        Ok((Ok(_), batch, held)) => (batch, held),
        Ok((Err(e), ..)) => return refuse_body(&ctx, peer, "bad_push", e),
        Err(r) => return r,
    };
    match queue(&ctx, batch, held).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}

async fn remote_write(
    State(ctx): Shared,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    raw: Body,
) -> Response {
    let types = &["application/x-protobuf"];
    let req = match body(&ctx, peer, &headers, raw, types, &["snappy"]).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let decoded = decode(&ctx, req, |ctx, bytes, batch| {
        remote_write::decode(bytes, ctx.max_body_bytes, ctx.max_decoded_bytes, batch)
    });
    let (batch, held) = match decoded.await {
        Ok((Ok(d), batch, held)) => {
            if d.skipped > 0 {
                let what = format!("{} series without __name__ skipped", d.skipped);
                ctx.net.bad_input("no_name", peer, &what);
            }
            (batch, held)
        }
        Ok((Err(remote_write::Error::OverBudget(o)), ..)) => {
            return refuse_body(&ctx, peer, "bad_write", BodyError::OverBudget(o))
        }
        // 400: Prometheus drops the request rather than retrying it forever.
        Ok((Err(e), ..)) => {
            return refuse(
                &ctx,
                peer,
                StatusCode::BAD_REQUEST,
                "bad_write",
                e.to_string(),
            )
        }
        Err(r) => return r,
    };
    match queue(&ctx, batch, held).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}
