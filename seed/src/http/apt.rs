//! `GET|HEAD /apt/<prefix>/<path>`: the APT mirror. The decisions (static or proxied, which
//! file, verified how) are [`crate::mirror`]'s; this serves what it names, with the same
//! ranges and ETags as images.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{App, files};
use crate::mirror::{Answer, Mirror, MirrorError};

/// The mirror and the directories it answers from.
pub struct Apt {
    /// The decisions.
    pub mirror: Arc<Mirror>,
    /// Each static repository's directory, by prefix.
    pub statics: HashMap<String, files::Root>,
    /// The proxy's cache.
    pub cache: files::Root,
}

impl Apt {
    /// The HTTP side of `mirror`.
    pub fn new(mirror: Arc<Mirror>) -> Self {
        Self {
            statics: mirror
                .static_dirs()
                .map(|(prefix, dir)| (prefix.to_string(), files::Root::new(dir)))
                .collect(),
            cache: files::Root::new(mirror.cache_dir()),
            mirror,
        }
    }
}

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
        Err(e) => {
            let status = match &e {
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
    }
}
