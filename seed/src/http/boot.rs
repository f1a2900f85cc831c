//! What firmware, iPXE and the installer fetch: the node's script, the iPXE binaries (UEFI HTTP
//! boot) and the images (kernel, initrd, ISO).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::app::{App, decide};
use super::files;
use crate::net::MacAddr;
use crate::provision::IpxeClient;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/boot.ipxe", get(script))
        .route("/ipxe/{binary}", get(binary))
        .route("/images/{*path}", get(image_file))
        .route("/disks/{*path}", get(disk_file))
}

/// `GET|HEAD /disks/<image>/disk.raw`: a disk image for seed's agent, with ranges (a
/// dropped transfer resumes where it broke off).
async fn disk_file(
    State(app): State<Arc<App>>,
    Path(path): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    files::serve(&app.disks, &path, &method, &headers).await
}

/// `GET|HEAD /images/<image>/<file>`: from the image catalogue's directory, with ranges.
async fn image_file(
    State(app): State<Arc<App>>,
    Path(path): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    files::serve(&app.images, &path, &method, &headers).await
}

/// `GET /boot.ipxe?mac=<mac>[&chip=…&platform=…]`: the script for this machine's state. The
/// DHCP side hands out this URL with the MAC filled in and iPXE fills in the rest. The
/// installer goes only to the address that is the node's ([`crate::provision::Nodes::ipxe_script`]).
async fn script(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(raw) = query.get("mac") else {
        return (
            StatusCode::BAD_REQUEST,
            "boot.ipxe: the `mac` parameter is missing\n",
        )
            .into_response();
    };
    let mac: MacAddr = match raw.parse() {
        Ok(mac) => mac,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("boot.ipxe: mac `{raw}`: {e}\n"),
            )
                .into_response();
        }
    };
    let client = IpxeClient {
        chip: query.get("chip").cloned(),
        platform: query.get("platform").cloned(),
    };
    match decide(&app, move |nodes| {
        nodes.ipxe_script(mac, peer.ip(), &client)
    })
    .await
    {
        Ok(script) => (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            script,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /ipxe/<binary>`: the embedded iPXE binaries, for UEFI HTTP boot (which skips TFTP).
async fn binary(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(bytes) = ipxe::binaries::binary(&name) else {
        return (
            StatusCode::NOT_FOUND,
            format!("{name}: seed carries no such binary\n"),
        )
            .into_response();
    };
    // The bytes are fixed at build time; their recorded SHA-256 names them.
    let sha = ipxe::binaries::sha256(&name).unwrap_or("unknown");
    let etag = format!("\"{}\"", &sha[..sha.len().min(32)]);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| files::none_match(v, &etag))
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "application/efi".to_string()),
            (header::ETAG, etag),
        ],
        bytes,
    )
        .into_response()
}
