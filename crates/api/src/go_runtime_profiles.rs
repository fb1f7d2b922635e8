//! Go-runtime profiles (park and allocation profiles from `lastmile go-runtime attach` or
//! serve's `go_runtime:` watcher), kept as JSON files under `<data dir>/go-runtime-profiles/`
//! so a UI can list and show them.
//!
//! - `POST /api/v1/go-runtime/profiles`: store one (a JSON object with `kind` "park" or
//!   "alloc" and a numeric `pid`; at most 8 MiB). Written to a temporary file, fsynced and
//!   renamed, so an acknowledged profile survives a crash.
//! - `GET /api/v1/go-runtime/profiles[?limit=N]`: summaries, newest first.
//! - `GET /api/v1/go-runtime/profiles/{id}`: one profile.

use std::io::Write;
use std::path::{Path, PathBuf};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::{ApiError, AppState};

const MAX_PROFILE_BYTES: usize = 8 << 20;
pub const DIR_NAME: &str = "go-runtime-profiles";

pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join(DIR_NAME)
}

/// Checks a profile and stores it durably; returns its id.
pub fn store(data_dir: &Path, body: &[u8]) -> Result<String, ApiError> {
    if body.len() > MAX_PROFILE_BYTES {
        return Err(ApiError::TooLarge(format!(
            "profile of {} bytes exceeds the limit of {MAX_PROFILE_BYTES} bytes",
            body.len()
        )));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadData(format!("profile is not valid JSON: {e}")))?;
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind != "park" && kind != "alloc" {
        return Err(ApiError::BadData(
            "profile needs \"kind\": \"park\" or \"alloc\"".into(),
        ));
    }
    let pid = v
        .get("pid")
        .and_then(Value::as_u64)
        .ok_or_else(|| ApiError::BadData("profile needs a numeric \"pid\"".into()))?;
    let start = v.get("start_unix_ms").and_then(Value::as_i64).unwrap_or(0);
    let dir = dir(data_dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| ApiError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let id = format!("{now:020}-{pid}-{kind}");
    let tmp = dir.join(format!(".{id}.tmp"));
    let path = dir.join(format!("{id}.json"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        ApiError::Unavailable(format!("cannot store the profile: {e}"))
    })?;
    tracing::info!(%id, kind, pid, start, "stored a Go runtime profile");
    Ok(id)
}

pub async fn post(State(st): State<AppState>, body: Bytes) -> Response {
    let data_dir = st.db.dir().to_owned();
    match tokio::task::spawn_blocking(move || store(&data_dir, &body)).await {
        Ok(Ok(id)) => (
            StatusCode::CREATED,
            Json(json!({"status": "success", "data": {"id": id}})),
        )
            .into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError::Internal(format!("profile store panicked: {e}")).into_response(),
    }
}

#[derive(serde::Deserialize)]
pub struct ListParams {
    limit: Option<usize>,
}

pub async fn list(State(st): State<AppState>, Query(p): Query<ListParams>) -> Response {
    let dir = dir(st.db.dir());
    let limit = p.limit.unwrap_or(100).min(1000);
    let mut ids: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.strip_suffix(".json").map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    let mut out = Vec::new();
    for id in ids.into_iter().take(limit) {
        let Ok(text) = std::fs::read(dir.join(format!("{id}.json"))) else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<Value>(&text) else {
            continue;
        };
        let pick = |k: &str| v.get(k).cloned().unwrap_or(Value::Null);
        out.push(json!({
            "id": id,
            "kind": pick("kind"),
            "pid": pick("pid"),
            "exe": pick("exe"),
            "go_version": pick("go_version"),
            "labels": pick("labels"),
            "start_unix_ms": pick("start_unix_ms"),
            "duration_seconds": pick("duration_seconds"),
            "top_reason": v.get("reasons").and_then(|r| r.get(0)).cloned().unwrap_or(Value::Null),
        }));
    }
    Json(json!({"status": "success", "data": out})).into_response()
}

pub async fn get_one(State(st): State<AppState>, UrlPath(id): UrlPath<String>) -> Response {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return ApiError::BadData(format!("invalid profile id {id:?}")).into_response();
    }
    let path = dir(st.db.dir()).join(format!("{id}.json"));
    match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => Json(json!({"status": "success", "data": v})).into_response(),
            Err(e) => ApiError::Internal(format!("stored profile {id} is unreadable: {e}"))
                .into_response(),
        },
        Err(_) => ApiError::NotFound(format!("no profile {id}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_checks_and_keeps() {
        let d = tempfile::tempdir().unwrap();
        assert!(store(d.path(), b"not json").is_err());
        assert!(store(d.path(), br#"{"kind":"cpu","pid":1}"#).is_err());
        assert!(store(d.path(), br#"{"kind":"park"}"#).is_err());
        let id = store(d.path(), br#"{"kind":"park","pid":42,"reasons":[]}"#).unwrap();
        assert!(id.ends_with("-42-park"));
        let kept = std::fs::read(dir(d.path()).join(format!("{id}.json"))).unwrap();
        assert!(kept.starts_with(b"{\"kind\":\"park\""));
    }
}
