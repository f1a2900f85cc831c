//! `GET|HEAD /apt/<prefix>/<path>`: the APT mirror. The decisions (static or proxied, which
//! file, verified how) are [`crate::mirror`]'s; this serves what it names, with the same
//! ranges and ETags as images.

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::body::Bytes;
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

/// A download in progress, streamed as it grows: headers once the upstream answered (with
/// Content-Length when it gave one), then every byte as it is flushed to the temporary file.
/// A download that fails, also one whose bytes all went out but did not verify, aborts the
/// connection, so the client never takes it for complete.
async fn growing(mut download: Growing, method: &Method, prefix: &str, path: &str) -> Response {
    let first = download
        .progress
        .wait_for(|p| p.total.is_some() || p.written > 0 || p.end.is_some())
        .await
        .map(|p| p.clone());
    let total = match first {
        Ok(p) => match p.end {
            Some(Err(e)) if p.written == 0 => return error(prefix, path, &e.into()),
            _ => p.total,
        },
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let mut headers = vec![(header::CONTENT_TYPE, "application/octet-stream".to_string())];
    if let Some(total) = total {
        headers.push((header::CONTENT_LENGTH, total.to_string()));
    }
    if method == Method::HEAD {
        return (headers_map(headers), Body::empty()).into_response();
    }
    let stream =
        futures_util::stream::unfold((download, 0u64, false), |(mut d, sent, over)| async move {
            if over {
                return None;
            }
            loop {
                let p = d.progress.borrow_and_update().clone();
                if sent < p.written {
                    let n = (p.written - sent).min(CHUNK);
                    let file = Arc::clone(&d.file);
                    let read = tokio::task::spawn_blocking(move || {
                        let mut buf = vec![0u8; n as usize];
                        file.read_exact_at(&mut buf, sent).map(|()| buf)
                    })
                    .await;
                    return Some(match read {
                        Ok(Ok(buf)) => (Ok(Bytes::from(buf)), (d, sent + n, false)),
                        Ok(Err(e)) => (Err(e), (d, sent, true)),
                        Err(e) => (Err(std::io::Error::other(e.to_string())), (d, sent, true)),
                    });
                }
                match p.end {
                    Some(Ok(())) => return None,
                    Some(Err(e)) => {
                        return Some((Err(std::io::Error::other(e.to_string())), (d, sent, true)));
                    }
                    None => {
                        if d.progress.changed().await.is_err() {
                            let gone = std::io::Error::other("the download ended without a result");
                            return Some((Err(gone), (d, sent, true)));
                        }
                    }
                }
            }
        });
    (headers_map(headers), Body::from_stream(stream)).into_response()
}

/// Bytes per read of a growing file.
const CHUNK: u64 = 64 << 10;

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
