//! Request parameters the Prometheus way: from the query string and, for POST, from a
//! form-encoded body; keys like `match[]` may repeat.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{Method, header};
use http_body_util::BodyExt;
use lastmile_model::time::parse_api_time;

use crate::ApiError;

/// Form bodies for read endpoints are small; refuse anything bigger outright.
const MAX_FORM_BYTES: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn time(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => parse_api_time(v)
                .map(Some)
                .map_err(|e| ApiError::BadData(format!("invalid parameter {key:?}: {e}"))),
        }
    }

    pub fn usize(&self, key: &str) -> Result<Option<usize>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse::<usize>()
                .map(|n| if n == 0 { None } else { Some(n) })
                .map_err(|_| {
                    ApiError::BadData(format!(
                        "invalid parameter {key:?}: {v:?} is not a non-negative integer"
                    ))
                }),
        }
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let mut pairs: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if req.method() == Method::POST && is_form {
            let limited = http_body_util::Limited::new(req.into_body(), MAX_FORM_BYTES);
            let body: Bytes = limited
                .collect()
                .await
                .map_err(|_| ApiError::TooLarge(format!("form body over {MAX_FORM_BYTES} bytes")))?
                .to_bytes();
            pairs.extend(form_urlencoded::parse(&body).into_owned());
        }
        Ok(Params(pairs))
    }
}
