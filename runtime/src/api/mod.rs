//! The admin HTTP API of a running pipeline, enabled by an `[api]` section
//! (loopback by default; with `token`, every route but `/health` wants
//! `Authorization: Bearer TOKEN`).
//!
//! - `GET /health`: ready, and whether each component is running.
//! - `GET /metrics`: weir's own metrics in Prometheus exposition.
//! - `GET /pipeline`: the components and what each reads.
//! - `GET /components`: each component's counters as JSON (`weir top`).
//! - `GET /tap/COMPONENT?limit=N&sample=N`: the events leaving a component,
//!   as JSON lines (what `weir tap` prints).
//! - `POST /sql`: a live query (`weir sql --live`).
//! - `GET /alerts`, `GET /silences`, `POST /silences`, `DELETE /silences/ID`
//!   (`weir alerts`).
//!
//! Taps and live queries watch a component's output through a queue of
//! their own: they get what fits in it and never slow the pipeline down,
//! and detaching leaves the pipeline as it was.

mod alerts;
pub mod components;
mod metrics;
mod sql;
mod tap;

use crate::alerts::Hub;
use crate::config::{Node, Pipeline};
use crate::topology::{Running, Snapshot, WeakOutput};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use std::sync::{Arc, RwLock};

/// What the API shows of the running pipeline, replaced after each reload
/// by whoever reloads.
#[derive(Clone, Default)]
pub struct View {
    pub pipeline: Snapshot,
    pub nodes: Vec<Node>,
}

pub type Shared = Arc<RwLock<View>>;

impl View {
    pub fn of(running: &Running, p: &Pipeline) -> View {
        View {
            pipeline: running.snapshot(),
            nodes: p.describe(),
        }
    }
}

/// What the handlers reach.
#[derive(Clone)]
struct Api {
    view: Shared,
    alerts: Option<Arc<Hub>>,
}

impl Api {
    fn view(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The output named `name` (`COMPONENT`, `COMPONENT.late`, ...), or
    /// why not, listing the ones there are.
    fn output(&self, name: &str) -> Result<WeakOutput, String> {
        let view = self.view();
        let outputs = &view.pipeline.outputs;
        outputs.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = outputs.keys().map(String::as_str).collect();
            format!(
                "no component `{name}` in the running pipeline (there are: {})",
                known.join(", ")
            )
        })
    }
}

/// Binds `address` and serves the API on a thread of its own.
pub fn start(
    address: &str,
    token: Option<String>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    view: Shared,
    alerts: Option<Arc<Hub>>,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind(address)
        .map_err(|e| anyhow::anyhow!("[api] address: cannot listen on {address}: {e}"))?;
    let local = listener.local_addr()?;
    let token = token.filter(|t| !t.is_empty()).map(Arc::new);
    let has_token = token.is_some();
    let protected = axum::Router::new()
        .route("/metrics", get(metrics::serve))
        .route("/components", get(components::serve))
        .route("/pipeline", get(pipeline))
        .route("/tap/{component}", get(tap::serve))
        .route("/sql", post(sql::live_sql))
        .route("/alerts", get(alerts::list_alerts))
        .route(
            "/silences",
            get(alerts::list_silences).post(alerts::add_silence),
        )
        .route("/silences/{id}", delete(alerts::expire_silence))
        .layer(axum::middleware::from_fn_with_state(token, authorize));
    let app = axum::Router::new()
        .route("/health", get(health))
        .merge(protected)
        .with_state(Api { view, alerts });
    let scheme = if tls.is_some() { "https" } else { "http" };
    serve_tls("api", listener, app, tls)?;
    tracing::info!("admin API on {scheme}://{local}");
    if !has_token && !crate::config::is_loopback(address) {
        tracing::warn!("the admin API on {local} is beyond loopback with no token (allow_no_token): anyone who reaches it can read events and run SQL");
    }
    Ok(local)
}

/// Serves `app` on `listener` from a thread of its own (named `what`),
/// with a single-threaded runtime: HTTP here is for people and scrapers,
/// and stays off the pipeline's threads.
pub fn serve(
    what: &str,
    listener: std::net::TcpListener,
    app: axum::Router,
) -> std::io::Result<()> {
    serve_tls(what, listener, app, None)
}

/// [`serve`], over TLS when `tls` is set: each connection's handshake runs
/// in its own task, within 10 s.
pub fn serve_tls(
    what: &str,
    listener: std::net::TcpListener,
    app: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let name = what.to_string();
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return tracing::error!("{name}: no runtime: {e}"),
            };
            rt.block_on(async move {
                let l = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return tracing::error!("{name}: {e}"),
                };
                let Some(tls) = tls else {
                    if let Err(e) = axum::serve(l, app).await {
                        tracing::error!("{name} stopped: {e}");
                    }
                    return;
                };
                loop {
                    let (tcp, peer) = match l.accept().await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!("{name}: accept: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let (tls, app, name) = (tls.clone(), app.clone(), name.clone());
                    tokio::spawn(async move {
                        let wait = std::time::Duration::from_secs(10);
                        let stream = match tokio::time::timeout(wait, tls.accept(tcp)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => return tracing::debug!("{name}: {peer}: TLS: {e}"),
                            Err(_) => {
                                return tracing::debug!("{name}: {peer}: TLS handshake too slow")
                            }
                        };
                        let service = hyper_util::service::TowerToHyperService::new(app);
                        let conn = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                        if let Err(e) = conn.await {
                            tracing::debug!("{name}: {peer}: {e}");
                        }
                    });
                }
            })
        })?;
    Ok(())
}

/// A response of Prometheus metrics in OpenMetrics text.
pub fn openmetrics(text: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// With a token configured, a request must carry it as a bearer token.
async fn authorize(State(token): State<Option<Arc<String>>>, req: Request, next: Next) -> Response {
    if let Some(token) = token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return error(
                StatusCode::UNAUTHORIZED,
                "this API wants `Authorization: Bearer TOKEN` ([api] token; `--token` or WEIR_API_TOKEN for weir's commands)".into(),
            );
        }
    }
    next.run(req).await
}

/// Live while it answers; ready while every component runs (a source that
/// reached the end of its file is finished, and the pipeline no longer
/// ready). Each component is `running` or `finished`.
async fn health(State(api): State<Api>) -> impl IntoResponse {
    let states = api.view().pipeline.components();
    let ready = states.values().all(|up| *up);
    let components: serde_json::Map<String, serde_json::Value> = states
        .into_iter()
        .map(|(name, up)| (name, (if up { "running" } else { "finished" }).into()))
        .collect();
    axum::Json(serde_json::json!({
        "status": "ok",
        "live": true,
        "ready": ready,
        "components": components,
    }))
}

async fn pipeline(State(api): State<Api>) -> impl IntoResponse {
    axum::Json(api.view().nodes.clone())
}

fn error(status: StatusCode, msg: String) -> Response {
    (status, format!("{msg}\n")).into_response()
}

/// A streamed response of JSON lines from `rx`, until it closes.
fn ndjson(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Response {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}
