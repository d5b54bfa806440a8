//! `GET /tap/COMPONENT?limit=N&sample=N`: the events leaving a component
//! as JSON lines, as they pass. `sample=N` keeps every Nth; `limit` ends
//! the stream after that many. A tap sees what fits in its own queue and
//! never holds the pipeline up.

use super::{error, ndjson, Api};
use crate::codec::json_encode;
use crate::topology::Batch;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;

#[derive(serde::Deserialize)]
pub struct Params {
    limit: Option<u64>,
    #[serde(default = "one")]
    sample: u64,
}

fn one() -> u64 {
    1
}

pub async fn serve(
    State(api): State<Api>,
    Path(component): Path<String>,
    Query(params): Query<Params>,
) -> Response {
    if params.sample == 0 {
        return error(StatusCode::BAD_REQUEST, "sample: 1 or more".into());
    }
    let output = match api.output(&component) {
        Ok(o) => o,
        Err(msg) => return error(StatusCode::NOT_FOUND, msg),
    };
    let (tap_tx, tap_rx) = async_channel::bounded::<Batch>(16);
    if !output.tap(tap_tx) {
        return error(StatusCode::GONE, format!("`{component}` has ended"));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tracing::info!(component = %component, "tap attached");
    tokio::spawn(async move {
        let (mut seen, mut sent) = (0u64, 0u64);
        let limit = params.limit.unwrap_or(u64::MAX);
        let mut buf = Vec::new();
        // Ends when the client leaves, events or not.
        let next = || async {
            tokio::select! {
                batch = tap_rx.recv() => batch.ok(),
                () = tx.closed() => None,
            }
        };
        'batches: while let Some(batch) = next().await {
            buf.clear();
            for event in batch.iter() {
                seen += 1;
                if (seen - 1) % params.sample != 0 {
                    continue;
                }
                json_encode::write_event(&mut buf, &event);
                buf.push(b'\n');
                sent += 1;
                if sent >= limit {
                    let _ = tx.send(Bytes::from(std::mem::take(&mut buf))).await;
                    break 'batches;
                }
            }
            if !buf.is_empty() && tx.send(Bytes::copy_from_slice(&buf)).await.is_err() {
                break;
            }
        }
        tracing::info!(component = %component, "tap detached after {sent} events");
    });
    ndjson(rx)
}
