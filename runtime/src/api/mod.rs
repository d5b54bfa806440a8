//! The admin HTTP API of a running pipeline, enabled by an `[api]` section
//! (loopback by default). Today: `GET /health` and live SQL.
//!
//! `POST /sql` with a query as the body attaches the query to the
//! component its `FROM` names and streams the rows of each closed window
//! back as JSON lines until the client goes away. The query watches the
//! component through a tap: it gets what fits in its queue and never slows
//! the pipeline down, and detaching leaves the pipeline as it was.

use crate::topology::WeakOutput;
use axum::body::{Body, Bytes};
use axum::extract::{Query as Params, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use weir_layout::BatchBuf;

/// The outputs of the running components by name, kept current across
/// reloads by whoever reloads.
pub type Outputs = Arc<RwLock<BTreeMap<String, WeakOutput>>>;

/// Binds `address` and serves the API on a thread of its own.
pub fn start(address: &str, outputs: Outputs) -> anyhow::Result<std::net::SocketAddr> {
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
                    .with_state(outputs);
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

async fn health(State(outputs): State<Outputs>) -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok", "components": names(&outputs) }))
}

fn error(status: StatusCode, msg: String) -> Response {
    (status, format!("{msg}\n")).into_response()
}

async fn live_sql(
    State(outputs): State<Outputs>,
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
                    if !send(&p.rows) {
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
                send(&rows);
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
