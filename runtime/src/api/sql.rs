//! `POST /sql`: a live query attached to a running component through a
//! tap, streaming the rows of each closed window as JSON lines. A query
//! detaches as soon as its client goes away, rows or not, and at most
//! [`MAX_LIVE_QUERIES`] run at once (429 past that).

use super::{error, Api};
use crate::topology::Batch;
use axum::body::Bytes;
use axum::extract::{Query as Params, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Live queries at once: each has a thread and its windows' state.
pub const MAX_LIVE_QUERIES: usize = 8;

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// One of the [`MAX_LIVE_QUERIES`] slots, given back when dropped.
struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        LIVE.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_LIVE_QUERIES).then_some(n + 1)
        })
        .ok()
        .map(|_| Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::AcqRel);
    }
}

pub async fn live_sql(
    State(api): State<Api>,
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
    let output = match api.output(table) {
        Ok(o) => o,
        Err(msg) => return error(StatusCode::NOT_FOUND, msg),
    };
    let opts = weir_sql::QueryOptions {
        tables: vec![table.clone()],
        schema: None,
        allowed_lateness: lateness,
        max_groups: Some(100_000),
    };
    let mut query = match weir_sql::Query::new(&sql, opts) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Some(slot) = Slot::take() else {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{MAX_LIVE_QUERIES} live queries are running; end one first"),
        );
    };
    let (tap_tx, tap_rx) = async_channel::bounded::<Batch>(16);
    if !output.tap(tap_tx) {
        return error(StatusCode::GONE, format!("`{table}` has ended"));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let name = table.clone();
    tracing::info!(component = %name, "live query attached");
    // Waits for the next batch or the client's leaving, whichever is
    // first; neither needs the API runtime's I/O driver.
    let runtime = tokio::runtime::Handle::current();
    std::thread::spawn(move || {
        let _slot = slot;
        let next = || {
            runtime.block_on(async {
                tokio::select! {
                    batch = tap_rx.recv() => batch.ok(),
                    () = tx.closed() => None,
                }
            })
        };
        let send = |rows: &[weir_sql::arrow::array::RecordBatch]| -> bool {
            let mut buf = Vec::new();
            if let Err(e) = crate::sql::json_lines(rows, &mut buf) {
                buf = (serde_json::json!({ "_error": e.to_string() }).to_string() + "\n").into();
            }
            buf.is_empty() || tx.blocking_send(Bytes::from(buf)).is_ok()
        };
        while let Some(batch) = next() {
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
    super::ndjson(rx)
}
