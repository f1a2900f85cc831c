//! A node's private URLs, `/nodes/<token>/…`: its NoCloud datasource (user-data, meta-data,
//! vendor-data), the installer's callbacks and seed's agent's inspection. The token is the only credential; [`Nodes`]
//! decides whether it is (still) good.
//!
//! [`Nodes`]: crate::provision::Nodes

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::app::{App, decide};
use crate::agent::inspect::{Inspection, MAX_ENLIST_BYTES};
use crate::net::{MacAddr, printable};
use crate::provision::{Callback, Document, InstallerEvent};

/// Installer events are a few hundred bytes; a body far beyond that is not one.
const MAX_REPORT: usize = 64 * 1024;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/nodes/{token}/user-data", get(user_data))
        .route("/nodes/{token}/meta-data", get(meta_data))
        .route("/nodes/{token}/vendor-data", get(vendor_data))
        .route("/nodes/{token}/deploy", get(deploy_plan))
        .route("/nodes/{token}/events", post(events))
        .route("/nodes/{token}/installed", post(installed))
        .route("/nodes/{token}/failed", post(failed))
        .route("/nodes/{token}/phone-home", post(phone_home))
        .layer(DefaultBodyLimit::max(MAX_REPORT))
        .merge(
            Router::new()
                .route("/nodes/{token}/inventory", post(inventory))
                .layer(DefaultBodyLimit::max(MAX_INSPECTION)),
        )
        .merge(
            Router::new()
                .route("/enlist/{mac}", post(enlist))
                .layer(DefaultBodyLimit::max(MAX_ENLIST_BYTES)),
        )
}

/// seed's agent on a machine seed does not know enlists it (`seed.enlist`): the inspection of
/// the machine whose boot NIC is `mac`, from the address seed leased to that MAC.
async fn enlist(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(mac): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(mac) = mac.parse::<MacAddr>() else {
        return (
            StatusCode::BAD_REQUEST,
            format!("enlist: `{}` is not a MAC address\n", printable(&mac)),
        )
            .into_response();
    };
    let inspection: Inspection = match serde_json::from_slice(&body) {
        Ok(inspection) => inspection,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("enlist {mac}: not an agent's inspection: {e}\n"),
            )
                .into_response();
        }
    };
    if let Err(problem) = inspection.check() {
        return (
            StatusCode::BAD_REQUEST,
            format!("enlist {mac}: {problem}\n"),
        )
            .into_response();
    }
    match decide(&app, move |nodes| nodes.enlist(mac, peer.ip(), &inspection)).await {
        Ok(summary) => (StatusCode::OK, format!("{summary}\n")).into_response(),
        Err(e) => e.into_response(),
    }
}

/// An agent's inspection of a machine with [`crate::agent::inspect::MAX_DISKS`] disks is some 400 KiB.
const MAX_INSPECTION: usize = 1024 * 1024;

/// seed's agent reports what it found on the node (`seed agent report`).
async fn inventory(
    State(app): State<Arc<App>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let inspection: Inspection = match serde_json::from_slice(&body) {
        Ok(inspection) => inspection,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("inventory: not an agent's inspection: {e}\n"),
            )
                .into_response();
        }
    };
    if let Err(problem) = inspection.check() {
        return (StatusCode::BAD_REQUEST, format!("inventory: {problem}\n")).into_response();
    }
    match decide(&app, move |nodes| nodes.inspected(&token, &inspection)).await {
        Ok(summary) => (StatusCode::OK, format!("{summary}\n")).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn document(app: Arc<App>, token: String, which: Document) -> Response {
    match decide(&app, move |nodes| nodes.document(&token, which)).await {
        Ok(text) => (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            text,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// The deploy plan seed's agent follows (`install.method: image`), as JSON.
async fn deploy_plan(State(app): State<Arc<App>>, Path(token): Path<String>) -> Response {
    match decide(&app, move |nodes| nodes.deploy_plan(&token)).await {
        Ok(plan) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            serde_json::to_string(&plan).unwrap_or_default(),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn user_data(State(app): State<Arc<App>>, Path(token): Path<String>) -> Response {
    document(app, token, Document::UserData).await
}

async fn meta_data(State(app): State<Arc<App>>, Path(token): Path<String>) -> Response {
    document(app, token, Document::MetaData).await
}

async fn vendor_data(State(app): State<Arc<App>>, Path(token): Path<String>) -> Response {
    document(app, token, Document::VendorData).await
}

async fn report(app: Arc<App>, token: String, report: Callback) -> Response {
    match decide(&app, move |nodes| nodes.report(&token, report)).await {
        Ok(state) => (StatusCode::OK, format!("{state}\n")).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The webhook reporter's event (curtin's `WebHookHandler` and subiquity post the same JSON).
/// Unknown fields are allowed: the installer adds some between releases.
#[derive(Debug, Deserialize)]
struct WebhookEvent {
    event_type: String,
    name: String,
    #[serde(default)]
    description: String,
    result: Option<String>,
}

async fn events(State(app): State<Arc<App>>, Path(token): Path<String>, body: Bytes) -> Response {
    let event: WebhookEvent = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(e) => {
            tracing::info!(error = %e, "installer event that is not the webhook JSON");
            return (
                StatusCode::BAD_REQUEST,
                format!("events: not an installer event: {e}\n"),
            )
                .into_response();
        }
    };
    let event = InstallerEvent {
        event_type: event.event_type,
        name: event.name,
        description: event.description,
        result: event.result,
    };
    report(app, token, Callback::Event(event)).await
}

async fn installed(State(app): State<Arc<App>>, Path(token): Path<String>) -> Response {
    report(app, token, Callback::Installed).await
}

async fn failed(State(app): State<Arc<App>>, Path(token): Path<String>) -> Response {
    report(app, token, Callback::Failed).await
}

/// cloud-init's phone_home posts a form (`instance_id=…&hostname=…`); it is kept as the event's
/// detail, shortened and printable.
async fn phone_home(
    State(app): State<Arc<App>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let detail: String = String::from_utf8_lossy(&body)
        .chars()
        .filter(|c| !c.is_control())
        .take(256)
        .collect();
    report(app, token, Callback::PhoneHome(detail)).await
}
