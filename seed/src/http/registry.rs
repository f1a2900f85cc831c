//! The registry's pull side at `/v2/` (OCI Distribution Specification: "Pull" and "Content
//! discovery"), answered from [`Registry`]: the base check, manifests by tag or digest, blobs
//! (with ranges; from disk by sendfile on the connection's own path), tags and the catalog with
//! `n`/`last` pagination. Read-only: writes are `UNSUPPORTED` (405), as distribution answers
//! them in read-only mode. Where the spec leaves a choice, seed answers as distribution 2.8
//! does (the registry OSISM runs), which `tests/tests/registry.rs` compares side by side.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;

use super::app::App;
use super::files::{self, Planned};
use crate::metrics::Pulled;
use crate::registry::reference::{Digest, Endpoint, Name, Reference, endpoint};
use crate::registry::{
    DOCKER_LIST, DOCKER_MANIFEST, MAX_MANIFEST, OCI_INDEX, OCI_MANIFEST, Registry, RegistryError,
};

/// Every answer says which API it speaks (clients check it on `/v2/`).
const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");
/// Entries in one page of tags or the catalog when the client does not say (distribution's
/// catalog default; it lists all tags unless asked).
const PAGE: usize = 100;
/// The most entries a page may ask for.
const MAX_PAGE: usize = 10_000;

/// The `/v2/` routes.
pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v2", any(base))
        .route("/v2/", any(base))
        .route("/v2/{*rest}", any(v2))
}

async fn base(method: Method) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return unsupported();
    }
    // `{}` as distribution writes it here: bare, no newline.
    let mut response = json(StatusCode::OK, "{}".into());
    *response.body_mut() = Body::from("{}");
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(2));
    response
}

#[derive(serde::Deserialize)]
struct Page {
    n: Option<String>,
    last: Option<String>,
}

async fn v2(
    State(app): State<Arc<App>>,
    method: Method,
    Path(rest): Path<String>,
    Query(page): Query<Page>,
    headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return unsupported();
    }
    let Some(registry) = app.registry.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known to registry",
            "",
        );
    };
    match endpoint(&rest) {
        Endpoint::Base => base(method).await,
        Endpoint::Catalog => {
            let names: Vec<String> = registry
                .repositories()
                .into_iter()
                .map(|n| n.to_string())
                .collect();
            paginated(
                &page,
                names,
                "/v2/_catalog",
                |list| serde_json::json!({ "repositories": list }),
            )
        }
        Endpoint::Tags(name) => {
            let Some(name) = Name::parse(&name) else {
                return name_invalid(&name);
            };
            let registry2 = Arc::clone(&registry);
            let name2 = name.clone();
            match tokio::task::spawn_blocking(move || registry2.tags(&name2)).await {
                Ok(Ok(tags)) => {
                    let path = format!("/v2/{name}/tags/list");
                    paginated(
                        &page,
                        tags,
                        &path,
                        |list| serde_json::json!({ "name": name.as_str(), "tags": list }),
                    )
                }
                Ok(Err(e)) => registry_error(&e),
                Err(e) => internal(&e.to_string()),
            }
        }
        Endpoint::Manifest(name, reference) => {
            let Some(name) = Name::parse(&name) else {
                return name_invalid(&name);
            };
            let Some(reference) = Reference::parse(&reference) else {
                return error(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    "manifest unknown",
                    &reference,
                );
            };
            if let Some(proxy) = &app.registry_proxy
                && let Err(e) = proxy.manifest(&name, &reference).await
            {
                return registry_error(&e);
            }
            let mut response = manifest(&registry, &name, &reference, &method, &headers).await;
            // The pull-through cache prunes on a thread of its own: a pulled manifest made
            // current above can be evicted before it is read. Missing from the store now, it
            // is made current once more, so a pull that resolved it never sees a 404.
            if response.status() == StatusCode::NOT_FOUND
                && let Some(proxy) = &app.registry_proxy
                && registry.manifest(&name, &reference).is_err()
                && proxy.manifest(&name, &reference).await.is_ok()
            {
                response = manifest(&registry, &name, &reference, &method, &headers).await;
            }
            if response.status() == StatusCode::OK {
                let bytes = match method {
                    Method::GET => body_length(response.headers()),
                    _ => 0,
                };
                app.metrics.registry_pull(Pulled::Manifest, bytes);
            }
            response
        }
        Endpoint::Blob(name, digest) => match blob_plan(&app, &name, &digest, &method, &headers) {
            Err(refused) if app.registry_proxy.is_some() => {
                match pulled_through(&app, &name, &digest, &method, &headers).await {
                    Some(response) => response,
                    None => *refused,
                }
            }
            Ok(planned) => served(&app, planned, &method),
            Err(response) => *response,
        },
        Endpoint::Unknown => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint", ""),
    }
}

/// A blob from the store, counted.
fn served(app: &App, planned: Planned, method: &Method) -> Response {
    if planned.status.is_success() && *method == Method::GET {
        app.metrics.registry_pull(Pulled::Blob, planned.body_len());
    }
    planned.into_response()
}

/// A blob the store lacks, from its upstream: streamed while it arrives (or, when it arrived
/// meanwhile, from the store). `None`: not an upstream's, or not one a verified manifest of the
/// repository names (the store's refusal stands).
async fn pulled_through(
    app: &Arc<App>,
    name: &str,
    digest: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Option<Response> {
    let proxy = app.registry_proxy.as_ref()?;
    let (name, digest) = (Name::parse(name)?, Digest::parse(digest)?);
    let entry = match proxy.blob(&name, &digest) {
        Ok(Some(entry)) => entry,
        Ok(None) => return None,
        Err(e) => return Some(registry_error(&e)),
    };
    let download = match entry {
        crate::cache::Entry::Growing(download) => download,
        crate::cache::Entry::Cached(_) => {
            return Some(
                match blob_plan(app, name.as_str(), &digest.to_string(), method, headers) {
                    Ok(planned) => served(app, planned, method),
                    Err(response) => *response,
                },
            );
        }
    };
    let (total, body) = match files::growing(download, *method == Method::HEAD).await {
        Ok(started) => started,
        Err(e) => return Some(registry_error(&e.into())),
    };
    if *method == Method::GET {
        // An upstream that sent no length counts nothing here: what streams is unknown yet.
        app.metrics.registry_pull(Pulled::Blob, total.unwrap_or(0));
    }
    let mut response = Response::new(body);
    let h = response.headers_mut();
    set(h, "content-type", "application/octet-stream");
    if let Some(total) = total {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    }
    set(h, "docker-content-digest", &digest.to_string());
    set(h, "etag", &format!("\"{digest}\""));
    set(h, API_VERSION.0, API_VERSION.1);
    Some(response)
}

/// Which manifest media types a client's `Accept` headers name (parameters and `q` ignored,
/// as distribution ignores them).
fn accepted(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

async fn manifest(
    registry: &Arc<Registry>,
    name: &Name,
    reference: &Reference,
    method: &Method,
    headers: &HeaderMap,
) -> Response {
    let accept = accepted(headers);
    let (registry, name2, reference2) = (Arc::clone(registry), name.clone(), reference.clone());
    let found = tokio::task::spawn_blocking(move || {
        let found = registry.manifest(&name2, &reference2)?;
        let bytes = read_manifest(&found.path)?;
        // A client that does not take an OCI type gets none (distribution 2.8's answer); one
        // that asks for a tag of a Docker manifest list without taking lists gets the
        // linux/amd64 image (what the Docker client of old pulled).
        if !accept.iter().any(|a| a == &found.media_type) {
            if found.media_type == OCI_INDEX || found.media_type == OCI_MANIFEST {
                let what = if found.media_type == OCI_INDEX {
                    "OCI index"
                } else {
                    "OCI manifest"
                };
                return Ok(Err(format!(
                    "{what} found, but accept header does not support {what}es"
                )));
            }
            if found.media_type == DOCKER_LIST
                && matches!(reference2, Reference::Tag(_))
                && let Some(child) = default_platform(&bytes)
            {
                let child = registry.manifest(&name2, &Reference::Digest(child))?;
                let child_bytes = read_manifest(&child.path)?;
                return Ok(Ok((child, child_bytes)));
            }
        }
        Ok::<_, RegistryError>(Ok((found, bytes)))
    })
    .await;
    let (found, bytes) = match found {
        Ok(Ok(Ok(found))) => found,
        Ok(Ok(Err(message))) => {
            return error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN", &message, "");
        }
        Ok(Err(e)) => return registry_error(&e),
        Err(e) => return internal(&e.to_string()),
    };
    let etag = format!("\"{}\"", found.digest);
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| files::none_match(v, &etag))
    {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let len = bytes.len();
        let mut response = Response::new(if *method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(bytes)
        });
        let h = response.headers_mut();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if let Ok(v) = HeaderValue::from_str(&found.media_type) {
            h.insert(header::CONTENT_TYPE, v);
        }
        response
    };
    let h = response.headers_mut();
    set(h, "docker-content-digest", &found.digest.to_string());
    set(h, "etag", &etag);
    set(h, API_VERSION.0, API_VERSION.1);
    response
}

/// A response's `Content-Length` (0 when it has none).
fn body_length(headers: &HeaderMap) -> u64 {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The linux/amd64 manifest of a Docker manifest list.
fn default_platform(list: &[u8]) -> Option<Digest> {
    let list: serde_json::Value = serde_json::from_slice(list).ok()?;
    list.get("manifests")?.as_array()?.iter().find_map(|m| {
        let platform = m.get("platform")?;
        (platform.get("os")?.as_str()? == "linux"
            && platform.get("architecture")?.as_str()? == "amd64"
            && m.get("mediaType")
                .and_then(|t| t.as_str())
                .unwrap_or(DOCKER_MANIFEST)
                == DOCKER_MANIFEST)
            .then(|| Digest::parse(m.get("digest")?.as_str()?))
            .flatten()
    })
}

fn read_manifest(path: &std::path::Path) -> Result<Vec<u8>, RegistryError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_MANIFEST).read_to_end(&mut bytes))
        .map_err(|e| RegistryError::Io(format!("{}: {e}", path.display())))?;
    Ok(bytes)
}

/// The answer to `GET|HEAD /v2/<name>/blobs/<digest>`: the file's plan (ranges, HEAD) with the
/// registry's headers, or the error response. Shared by hyper's path and the connection's own
/// (sendfile).
pub(super) fn blob_plan(
    app: &App,
    name: &str,
    digest: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Planned, Box<Response>> {
    let Some(registry) = app.registry.as_ref() else {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            "blob unknown to registry",
            digest,
        )));
    };
    let Some(name) = Name::parse(name) else {
        return Err(Box::new(name_invalid(name)));
    };
    let Some(digest) = Digest::parse(digest) else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            "provided digest did not match uploaded content",
            digest,
        )));
    };
    let stored = match registry.blob(&name, &digest) {
        Ok(stored) => stored,
        Err(e) => return Err(Box::new(registry_error(&e))),
    };
    if let Some(proxy) = &app.registry_proxy {
        proxy.served_from_store(&name);
    }
    let etag = format!("\"{digest}\"");
    let mut ours = headers.clone();
    // The registry's validator is the digest; the file's own (size and mtime) never reaches a
    // client, so a conditional request is answered here or not at all.
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| files::none_match(v, &etag))
    {
        let mut h = HeaderMap::new();
        set(&mut h, "etag", &etag);
        set(&mut h, "docker-content-digest", &digest.to_string());
        set(&mut h, API_VERSION.0, API_VERSION.1);
        return Ok(Planned {
            status: StatusCode::NOT_MODIFIED,
            headers: h,
            body: files::PlannedBody::Empty,
        });
    }
    ours.remove(header::IF_NONE_MATCH);
    ours.remove(header::IF_RANGE);
    ours.remove(header::IF_MODIFIED_SINCE);
    let mut planned = files::plan(registry_root(app), &stored, method, &ours);
    let h = &mut planned.headers;
    h.remove(header::LAST_MODIFIED);
    set(h, "etag", &etag);
    if planned.status.is_success() {
        set(h, "content-type", "application/octet-stream");
    }
    set(h, "docker-content-digest", &digest.to_string());
    set(h, "cache-control", "max-age=31536000");
    set(h, API_VERSION.0, API_VERSION.1);
    Ok(planned)
}

fn registry_root(app: &App) -> &files::Root {
    &app.registry_files
}

/// A page of `all` (sorted) after `last`, at most `n` long, with RFC 8288's `Link` to the next
/// page when there is one (the spec's pagination).
fn paginated(
    page: &Page,
    all: Vec<String>,
    path: &str,
    body: impl Fn(&[String]) -> serde_json::Value,
) -> Response {
    let catalog = path == "/v2/_catalog";
    let n = match page.n.as_deref().map(str::parse::<usize>) {
        None => None,
        Some(Ok(n)) => Some(n.min(MAX_PAGE)),
        // distribution 2.8 ignores an `n` that is not a number.
        Some(Err(_)) => None,
    };
    let start = match &page.last {
        Some(last) => all.partition_point(|t| t.as_str() <= last.as_str()),
        None => 0,
    };
    let rest = &all[start.min(all.len())..];
    // distribution 2.8: tags are all listed unless `n` says (`n=0` too); the catalog pages
    // by 100 unless told.
    let take = match n {
        Some(0) if !catalog => rest.len(),
        Some(n) => n,
        None if catalog => PAGE,
        None => rest.len(),
    };
    let list = &rest[..take.min(rest.len())];
    let mut response = json(StatusCode::OK, body(list).to_string());
    if take < rest.len()
        && let Some(last) = list.last()
    {
        let link = format!(
            "<{path}?last={}&n={take}>; rel=\"next\"",
            query_escape(last)
        );
        set(response.headers_mut(), "link", &link);
    }
    response
}

/// A query value escaped as Go's `url.QueryEscape` does (distribution builds its `Link` so):
/// unreserved bytes kept, a space as `+`, everything else `%XX`.
fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// A JSON answer, ending in a newline as Go's JSON encoder (distribution's) writes it.
fn json(status: StatusCode, mut body: String) -> Response {
    body.push('\n');
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    set(h, "content-type", "application/json; charset=utf-8");
    set(h, API_VERSION.0, API_VERSION.1);
    response
}

/// The spec's error body: `{"errors":[{"code", "message", "detail"}]}`.
fn error(status: StatusCode, code: &str, message: &str, detail: &str) -> Response {
    let body = serde_json::json!({
        "errors": [{ "code": code, "message": message, "detail": detail }]
    });
    json(status, body.to_string())
}

fn unsupported() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "UNSUPPORTED",
        "The operation is unsupported.",
        "seed's registry is read-only: images come in with `seed registry import`",
    )
}

/// A name outside the grammar: 404 (distribution's router matches no route for it), with the
/// code that says why.
fn name_invalid(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NAME_INVALID",
        "invalid repository name",
        name,
    )
}

fn internal(message: &str) -> Response {
    tracing::error!(error = message, "registry request failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "UNKNOWN",
        "unknown error",
        "",
    )
}

fn registry_error(e: &RegistryError) -> Response {
    match e {
        RegistryError::NameInvalid(name) => name_invalid(name),
        RegistryError::NameUnknown(name) => error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known to registry",
            name,
        ),
        RegistryError::ManifestUnknown { reference, .. } => error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
            reference,
        ),
        RegistryError::BlobUnknown { digest, .. } => error(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            "blob unknown to registry",
            digest,
        ),
        RegistryError::DigestInvalid(digest) => error(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            "provided digest did not match uploaded content",
            digest,
        ),
        RegistryError::TagInvalid(tag) => error(
            StatusCode::BAD_REQUEST,
            "TAG_INVALID",
            "manifest tag did not match URI",
            tag,
        ),
        RegistryError::Upstream(why) | RegistryError::Corrupt { detail: why, .. } => {
            tracing::warn!(error = %e, "registry: pull through failed");
            error(
                StatusCode::BAD_GATEWAY,
                "UNKNOWN",
                "upstream registry failed",
                why,
            )
        }
        other => internal(&other.to_string()),
    }
}
