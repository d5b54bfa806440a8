//! The admin HTTP API of a running pipeline, enabled by an `[api]` section
//! (loopback by default): `GET /health`, live SQL, and alerts.
//!
//! - `GET /alerts`: every pending, firing and recently resolved alert.
//! - `GET /silences`, `POST /silences` (`{"matchers": ["service=\"cart\""],
//!   "duration": "2h", "comment": "..."}`), `DELETE /silences/ID`.
//!
//! `POST /sql` with a query as the body attaches the query to the
//! component its `FROM` names and streams the rows of each closed window
//! back as JSON lines until the client goes away. The query watches the
//! component through a tap: it gets what fits in its queue and never slows
//! the pipeline down, and detaching leaves the pipeline as it was.

use crate::alerts::matcher::Matcher;
use crate::alerts::silence::Silence;
use crate::alerts::Hub;
use crate::topology::WeakOutput;
use axum::body::{Body, Bytes};
use axum::extract::{Query as Params, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use weir_layout::BatchBuf;

/// The outputs of the running components by name, kept current across
/// reloads by whoever reloads.
pub type Outputs = Arc<RwLock<BTreeMap<String, WeakOutput>>>;

/// What the handlers reach.
#[derive(Clone)]
struct Api {
    outputs: Outputs,
    alerts: Option<Arc<Hub>>,
}

/// Binds `address` and serves the API on a thread of its own.
pub fn start(
    address: &str,
    outputs: Outputs,
    alerts: Option<Arc<Hub>>,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind(address)
        .map_err(|e| anyhow::anyhow!("[api] address: cannot listen on {address}: {e}"))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("api".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the API runtime starts");
            rt.block_on(async move {
                let app = axum::Router::new()
                    .route("/health", get(health))
                    .route("/sql", post(live_sql))
                    .route("/alerts", get(list_alerts))
                    .route("/silences", get(list_silences).post(add_silence))
                    .route("/silences/{id}", delete(expire_silence))
                    .with_state(Api { outputs, alerts });
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => {
                        if let Err(e) = axum::serve(l, app).await {
                            tracing::error!("admin API stopped: {e}");
                        }
                    }
                    Err(e) => tracing::error!("admin API: {e}"),
                }
            })
        })?;
    tracing::info!("admin API on http://{local}");
    Ok(local)
}

fn names(outputs: &Outputs) -> Vec<String> {
    let map = outputs.read().unwrap_or_else(|e| e.into_inner());
    map.keys().cloned().collect()
}

async fn health(State(api): State<Api>) -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok", "components": names(&api.outputs) }))
}

fn no_alerts() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "this pipeline has no [alerts.*] rules".into(),
    )
}

async fn list_alerts(State(api): State<Api>) -> Response {
    match &api.alerts {
        Some(h) => axum::Json(h.list()).into_response(),
        None => no_alerts(),
    }
}

async fn list_silences(State(api): State<Api>) -> Response {
    match &api.alerts {
        Some(h) => axum::Json(h.silences()).into_response(),
        None => no_alerts(),
    }
}

/// A silence to add: matchers, and how long (`duration`) or until when
/// (`ends_at`, RFC 3339).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSilence {
    matchers: Vec<String>,
    duration: Option<String>,
    ends_at: Option<String>,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    created_by: String,
}

async fn add_silence(State(api): State<Api>, body: axum::body::Bytes) -> Response {
    let Some(h) = &api.alerts else {
        return no_alerts();
    };
    let req: NewSilence = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a silence: {e}")),
    };
    match silence_from(req) {
        Ok(s) => {
            let id = h.silence(s);
            axum::Json(serde_json::json!({ "id": id })).into_response()
        }
        Err(msg) => error(StatusCode::BAD_REQUEST, msg),
    }
}

fn silence_from(req: NewSilence) -> Result<Silence, String> {
    if req.matchers.is_empty() {
        return Err("a silence needs at least one matcher, e.g. service=\"cart\"".into());
    }
    let matchers = req
        .matchers
        .iter()
        .map(|m| Matcher::parse(m))
        .collect::<Result<Vec<_>, _>>()?;
    let now = crate::alerts::silence::now_ms();
    let ends_at = match (req.duration, req.ends_at) {
        (Some(d), None) => {
            now + weir_sql::parse_duration(&d).map_err(|e| format!("duration: {e}"))? / 1_000_000
        }
        (None, Some(t)) => chrono::DateTime::parse_from_rfc3339(&t)
            .map_err(|e| format!("ends_at `{t}`: {e}"))?
            .timestamp_millis(),
        _ => return Err("give either `duration` (\"2h\") or `ends_at` (RFC 3339)".into()),
    };
    if ends_at <= now {
        return Err("the silence would end before it starts".into());
    }
    Ok(Silence {
        id: String::new(),
        matchers,
        starts_at: now,
        ends_at,
        created_by: req.created_by,
        comment: req.comment,
    })
}

async fn expire_silence(
    State(api): State<Api>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let Some(h) = &api.alerts else {
        return no_alerts();
    };
    if h.expire_silence(&id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no silence `{id}`"))
    }
}

fn error(status: StatusCode, msg: String) -> Response {
    (status, format!("{msg}\n")).into_response()
}

async fn live_sql(
    State(Api { outputs, .. }): State<Api>,
    Params(params): Params<HashMap<String, String>>,
    sql: String,
) -> Response {
    let lateness = match params.get("allowed_lateness") {
        Some(d) => match weir_sql::parse_duration(d) {
            Ok(ns) => ns,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("allowed_lateness: {e}")),
        },
        None => 0,
    };
    let tables = match weir_sql::tables(&sql) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let [table] = tables.as_slice() else {
        return error(
            StatusCode::BAD_REQUEST,
            "a live query reads one component: name it in FROM".into(),
        );
    };
    let output = outputs
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(table)
        .cloned();
    let Some(output) = output else {
        let known = names(&outputs);
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no component `{table}` in the running pipeline (there are: {})",
                known.join(", ")
            ),
        );
    };
    let opts = weir_sql::QueryOptions {
        tables: vec![table.clone()],
        schema: None,
        allowed_lateness: lateness,
    };
    let mut query = match weir_sql::Query::new(&sql, opts) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let (tap_tx, tap_rx) = async_channel::bounded::<BatchBuf>(16);
    if !output.tap(tap_tx) {
        return error(StatusCode::GONE, format!("`{table}` has ended"));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let name = table.clone();
    tracing::info!(component = %name, "live query attached");
    std::thread::spawn(move || {
        let send = |rows: &[weir_sql::arrow::array::RecordBatch]| -> bool {
            let mut buf = Vec::new();
            if let Err(e) = crate::sql::json_lines(rows, &mut buf) {
                buf = (serde_json::json!({ "_error": e.to_string() }).to_string() + "\n").into();
            }
            buf.is_empty() || tx.blocking_send(Bytes::from(buf)).is_ok()
        };
        while let Ok(batch) = tap_rx.recv_blocking() {
            match query.push(&batch) {
                Ok(p) => {
                    if !send(&weir_sql::batches(p.rows)) {
                        break;
                    }
                }
                Err(e) => {
                    let line = serde_json::json!({ "_error": e.to_string() }).to_string() + "\n";
                    let _ = tx.blocking_send(Bytes::from(line));
                    break;
                }
            }
        }
        if !tx.is_closed() {
            if let Ok(rows) = query.finish() {
                send(&weir_sql::batches(rows));
            }
        }
        tracing::info!(component = %name, "live query detached");
    });
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
