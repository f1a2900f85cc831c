//! `GET|HEAD /apt/<prefix>/<path>`: the APT mirror. The decisions (static or proxied, which
//! file, verified how) are [`crate::mirror`]'s; this serves what it names, with the same
//! ranges and ETags as images.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::app::App;
pub use super::app::Apt;
use super::files;
use crate::cache::Growing;
use crate::mirror::{Answer, MirrorError};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new().route("/apt/{prefix}/{*path}", get(apt_file))
}

async fn apt_file(
    State(app): State<Arc<App>>,
    Path((prefix, path)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let Some(apt) = &app.apt else {
        return (
            StatusCode::NOT_FOUND,
            "no mirror: the config has no `mirror:` section\n",
        )
            .into_response();
    };
    match apt.mirror.get(&prefix, &path).await {
        Ok(Answer::Static(relative)) => match apt.statics.get(&prefix) {
            Some(root) => files::serve(root, &relative, &method, &headers).await,
            None => StatusCode::NOT_FOUND.into_response(),
        },
        Ok(Answer::Cached(relative)) => {
            files::serve(&apt.cache, &relative, &method, &headers).await
        }
        Ok(Answer::Bytes(bytes)) => {
            let len = bytes.len();
            let body = if method == Method::HEAD {
                Body::empty()
            } else {
                Body::from(bytes)
            };
            (
                [
                    (
                        header::CONTENT_TYPE,
                        "text/plain; charset=utf-8".to_string(),
                    ),
                    (header::CONTENT_LENGTH, len.to_string()),
                ],
                body,
            )
                .into_response()
        }
        Ok(Answer::Growing(download)) => growing(download, &method, &prefix, &path).await,
        Err(e) => error(&prefix, &path, &e),
    }
}

/// A download in progress, streamed as it grows (`files::growing`); an error before its first
/// byte is the mirror's error answer.
async fn growing(download: Growing, method: &Method, prefix: &str, path: &str) -> Response {
    let (total, body) = match files::growing(download, method == Method::HEAD).await {
        Ok(started) => started,
        Err(e) => return error(prefix, path, &e.into()),
    };
    let mut headers = vec![(header::CONTENT_TYPE, "application/octet-stream".to_string())];
    if let Some(total) = total {
        headers.push((header::CONTENT_LENGTH, total.to_string()));
    }
    (headers_map(headers), body).into_response()
}

fn headers_map(headers: Vec<(header::HeaderName, String)>) -> HeaderMap {
    headers
        .into_iter()
        .filter_map(|(k, v)| Some((k, HeaderValue::from_str(&v).ok()?)))
        .collect()
}

fn error(prefix: &str, path: &str, e: &MirrorError) -> Response {
    let status = match e {
        MirrorError::NotFound(_) => StatusCode::NOT_FOUND,
        MirrorError::BadPath(_) => StatusCode::BAD_REQUEST,
        MirrorError::Upstream(_) | MirrorError::Mismatch(_) => StatusCode::BAD_GATEWAY,
        MirrorError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status != StatusCode::NOT_FOUND {
        tracing::warn!(prefix, path, error = %e, "APT mirror request failed");
    }
    (status, format!("{e}\n")).into_response()
}
