//! `GET /alerts`, `GET /silences`, `POST /silences`, `DELETE /silences/ID`:
//! what `weir alerts` calls.

use super::{error, Api};
use crate::alerts::matcher::Matcher;
use crate::alerts::silence::Silence;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

fn no_alerts() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "this pipeline has no [alerts.*] rules".into(),
    )
}

pub async fn list_alerts(State(api): State<Api>) -> Response {
    match &api.alerts {
        Some(h) => axum::Json(h.list()).into_response(),
        None => no_alerts(),
    }
}

pub async fn list_silences(State(api): State<Api>) -> Response {
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

pub async fn add_silence(State(api): State<Api>, body: axum::body::Bytes) -> Response {
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

pub async fn expire_silence(
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
