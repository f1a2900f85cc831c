//! The JSON API, `/metrics` and the status page. Reading states is open; what a node's events
//! say (MACs, addresses, the installer's words) and changing anything need the bearer token from
//! `seed.api_token`: a stranger on the provisioning network learns which nodes exist and their
//! states, never a MAC to ask for a node's installer with (docs/ARCHITECTURE.md, trust model).

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use super::app::{App, decide};
use crate::lifecycle::NodeState;
use crate::net::printable;
use crate::provision::{How, NodeError, StartError, start};
use crate::store::{Event, NodeRecord};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/nodes", get(nodes))
        .route("/api/v1/nodes/{name}", get(node))
        .route("/api/v1/nodes/{name}/events", get(events))
        .route("/api/v1/nodes/{name}/inspection", get(inspection))
        .route("/api/v1/nodes/{name}/provision", post(provision))
        .route("/api/v1/discovered", get(discovered))
        .route("/api/v1/discovered/{mac}", get(discovered_one))
        .route("/api/v1/images", get(images_list))
        .route("/metrics", get(metrics))
        .route("/", get(status_page))
}

/// A node as the API shows it: its store record and what the config says about it.
#[derive(Debug, Serialize)]
struct NodeView {
    name: String,
    role: Option<String>,
    image: Option<String>,
    state: NodeState,
    /// When the state last changed (ms since the Unix epoch).
    since: i64,
    /// Installer servings of the current provisioning.
    attempts: u32,
    /// The last event; its `detail` only for a caller with the API token.
    last_event: Option<EventView>,
}

/// An event as the API shows it.
#[derive(Debug, Serialize)]
struct EventView {
    id: i64,
    at: i64,
    kind: String,
    source: String,
    /// Left out without the API token.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

impl EventView {
    fn of(event: Event, detailed: bool) -> Self {
        Self {
            id: event.id,
            at: event.at,
            kind: event.kind,
            source: event.source,
            detail: detailed.then_some(event.detail),
        }
    }
}

fn view(app: &App, record: NodeRecord, detailed: bool) -> NodeView {
    let config = app.nodes.config();
    let node = config.node(&record.name);
    NodeView {
        role: node.map(|n| n.role.clone()),
        image: node.map(|n| n.image.clone()),
        name: record.name,
        state: record.state,
        since: record.updated_at,
        attempts: record.attempts,
        last_event: record.last_event.map(|e| EventView::of(e, detailed)),
    }
}

async fn nodes(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let detailed = unauthorized(&app, &headers).is_none();
    match decide(&app, |nodes| nodes.list()).await {
        Ok(records) => {
            let views: Vec<NodeView> = records
                .into_iter()
                .map(|r| view(&app, r, detailed))
                .collect();
            Json(views).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn node(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let detailed = unauthorized(&app, &headers).is_none();
    match decide(&app, move |nodes| nodes.get(&name)).await {
        Ok(record) => Json(view(&app, record, detailed)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/nodes/<name>/inspection` (API token: serials and MACs): what seed's agent
/// last found on the node, `{"taken_at": ms, "hardware": …}`.
async fn inspection(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = unauthorized(&app, &headers) {
        return refusal;
    }
    let asked = name.clone();
    match decide(&app, move |nodes| nodes.inspection(&name)).await {
        Ok(Some((at, hardware))) => {
            Json(serde_json::json!({ "taken_at": at, "hardware": hardware })).into_response()
        }
        Ok(None) => (
            StatusCode::NOT_FOUND,
            format!("{}: seed's agent has not inspected it\n", printable(&asked)),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/discovered` (API token: it is all MACs and addresses): the machines seed's DHCP
/// saw that are no node, most recently seen first, with when the agent enlisted each.
async fn discovered(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(refusal) = unauthorized(&app, &headers) {
        return refusal;
    }
    match decide(&app, |nodes| nodes.discovered()).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/discovered/<mac>` (API token): one discovered machine and, once enlisted,
/// what seed's agent found on it (`inspection`).
async fn discovered_one(
    State(app): State<Arc<App>>,
    Path(mac): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = unauthorized(&app, &headers) {
        return refusal;
    }
    let Ok(mac) = mac.parse::<crate::net::MacAddr>() else {
        return (
            StatusCode::BAD_REQUEST,
            format!("`{}` is not a MAC address\n", printable(&mac)),
        )
            .into_response();
    };
    match decide(&app, move |nodes| nodes.discovered_one(mac)).await {
        Ok(Some((machine, inspection))) => Json(serde_json::json!({
            "machine": machine,
            "inspection": inspection,
        }))
        .into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            format!("{mac} is not among the discovered machines\n"),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// Events per page unless `limit` says fewer; each event's detail is bounded by the store
/// ([`crate::store::MAX_EVENT_DETAIL`]), so a page is at most about 2.5 MB.
const EVENTS_PAGE: u32 = 500;

/// `GET /api/v1/nodes/<name>/events[?limit=N][&before=ID]` (API token): one page of a node's
/// events, oldest first, the newest `limit` before event `before`. A `Link: <…>; rel="next"`
/// header names the page before it while there is one.
async fn events(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = unauthorized(&app, &headers) {
        return refusal;
    }
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<u32>().ok())
        .unwrap_or(100)
        .clamp(1, EVENTS_PAGE);
    let before = query.get("before").and_then(|b| b.parse::<i64>().ok());
    let path_name = name.clone();
    match decide(&app, move |nodes| nodes.events_before(&name, limit, before)).await {
        Ok(events) => {
            let next = (events.len() == limit as usize)
                .then(|| events.first().map(|e| e.id))
                .flatten();
            let mut response = Json(events).into_response();
            if let Some(oldest) = next
                && let Ok(link) = axum::http::HeaderValue::from_str(&format!(
                    "</api/v1/nodes/{path_name}/events?limit={limit}&before={oldest}>; rel=\"next\""
                ))
            {
                response.headers_mut().insert(header::LINK, link);
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Serialize)]
struct Provisioned {
    node: String,
    state: NodeState,
    instance_id: String,
    /// False when the node was already provisioning or installing (nothing was restarted).
    started: bool,
    /// What was done to its power.
    power: String,
    /// Preflight warnings (`check: message`).
    warnings: Vec<String>,
}

/// A preflight finding as the API shows it.
#[derive(Debug, Serialize)]
struct FindingView {
    level: String,
    check: &'static str,
    message: String,
}

/// `POST /api/v1/nodes/<name>/provision[?force=true][&power=false][&preflight=false]`: the
/// same path as `seed provision` ([`crate::provision::start`]): preflight, mark, one network
/// boot and a power cycle through the node's BMC. `power=false` only marks it.
async fn provision(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = unauthorized(&app, &headers) {
        return refusal;
    }
    let flag =
        |key: &str, default: bool| query.get(key).map_or(default, |v| v == "true" || v == "1");
    let how = How {
        source: "api",
        force: flag("force", false),
        power: flag("power", true),
        preflight: flag("preflight", true),
    };
    let nodes = Arc::clone(&app.nodes);
    let state_dir = app.state_dir.clone();
    // Redfish and QMP calls block: the blocking pool, like the store calls.
    let result = tokio::task::spawn_blocking(move || start(&nodes, &state_dir, &name, &how))
        .await
        .unwrap_or_else(|e| {
            Err(StartError::Node(NodeError::Internal(format!(
                "request task failed: {e}"
            ))))
        });
    match result {
        Ok(s) => Json(Provisioned {
            node: s.node,
            state: s.state,
            instance_id: s.instance_id,
            started: s.started,
            power: s.power,
            warnings: s.warnings,
        })
        .into_response(),
        Err(StartError::Node(e)) => e.into_response(),
        Err(StartError::Preflight(report)) => {
            let error = StartError::Preflight(report.clone()).to_string();
            let findings: Vec<FindingView> = report
                .findings
                .into_iter()
                .map(|f| FindingView {
                    level: f.level.to_string().to_ascii_lowercase(),
                    check: f.check,
                    message: f.message,
                })
                .collect();
            (
                StatusCode::CONFLICT,
                Json(serde_json::json!({ "error": error, "findings": findings })),
            )
                .into_response()
        }
        Err(e @ StartError::Power { .. }) => {
            // Its BMC did not start it (the node is back in its previous state where that could
            // be done). 502: the upstream (the BMC) failed.
            tracing::warn!(error = %e, "provision: power failed");
            let state = match &e {
                StartError::Power { state, .. } => state.to_string(),
                _ => String::new(),
            };
            (
                StatusCode::BAD_GATEWAY,
                Json(serde_json::json!({ "error": e.to_string(), "state": state })),
            )
                .into_response()
        }
    }
}

/// A mutating call carries `Authorization: Bearer <seed.api_token>`; the refusal if it does not.
fn unauthorized(app: &App, headers: &HeaderMap) -> Option<Response> {
    let Some(expected) = &app.api_token else {
        return Some(
            (
                StatusCode::FORBIDDEN,
                "no seed.api_token is configured: the API is read-only\n",
            )
                .into_response(),
        );
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if constant_time_eq(given.as_bytes(), expected.expose().as_bytes()) {
        None
    } else {
        Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "a valid bearer token (seed.api_token) is required\n",
            )
                .into_response(),
        )
    }
}

/// Compare without stopping at the first difference, so timing says nothing about the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    match decide(&app, crate::provision::Nodes::count_by_state).await {
        Ok(nodes) => {
            let text = app.metrics.render(&crate::metrics::Readings {
                nodes,
                apt_upstream_fetches: app.apt.as_ref().map(|apt| apt.mirror.upstream_fetches()),
                registry_proxy: app.registry_proxy.as_ref().map(|p| p.counts()),
                registry_upstreams: app
                    .registry_proxy
                    .as_ref()
                    .map(|p| p.upstreams_up())
                    .unwrap_or_default(),
            });
            (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                text,
            )
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/images`: the image catalogue and the disk images (records with sizes and
/// hashes) and what the seed host's disk holds for them, the container registry and the APT
/// mirror's cache.
async fn images_list(State(app): State<Arc<App>>) -> Response {
    let root = app.images.path().to_path_buf();
    let disks_root = app.disks.path().to_path_buf();
    let mirror = app.apt.as_ref().map(|apt| Arc::clone(&apt.mirror));
    let registry = app.registry.clone();
    let listed = tokio::task::spawn_blocking(move || {
        let catalogue = images::Catalogue::new(root);
        let disks = images::disks::DiskCatalogue::new(&disks_root);
        let disk_images = disks.list()?;
        catalogue.list().map(|list| {
            serde_json::json!({
                "images": list,
                "disk_images": disk_images,
                "disk": {
                    "images_bytes": catalogue.disk_usage(),
                    "disk_images_bytes": images::disk_usage(&disks_root),
                    "registry_bytes": registry.as_ref().map(|r| r.disk_usage()),
                    "mirror_cache_bytes": mirror.as_ref().map(|m| m.disk_usage()),
                    "mirror_cache_limit_bytes": mirror.as_ref().map(|m| m.limit()),
                },
            })
        })
    })
    .await;
    match listed {
        Ok(Ok(json)) => Json(json).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// A page an operator can leave open: every node, its state and its last event.
async fn status_page(State(app): State<Arc<App>>) -> Response {
    let records = match decide(&app, |nodes| nodes.list()).await {
        Ok(records) => records,
        Err(e) => return e.into_response(),
    };
    let now = crate::store::now_ms();
    let mut page = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"10\">\
         <title>seed</title><style>body{font-family:sans-serif}td,th{padding:2px 10px;text-align:left}\
         </style></head><body><h1>seed</h1><table><tr><th>node</th><th>role</th><th>state</th>\
         <th>for</th><th>last event</th></tr>",
    );
    for record in records {
        // The page is for anyone on the network: states and event kinds, no details.
        let v = view(&app, record, false);
        let last = v
            .last_event
            .as_ref()
            .map_or_else(String::new, |e| format!("{} ({})", e.kind, e.source));
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&v.name),
            escape(v.role.as_deref().unwrap_or("-")),
            v.state,
            crate::lifecycle::duration_text(now - v.since),
            escape(&last)
        );
    }
    page.push_str("</table><p><a href=\"/api/v1/nodes\">JSON</a> · <a href=\"/api/v1/images\">images</a> · <a href=\"/metrics\">metrics</a></p></body></html>\n");
    Html(page).into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&"),
            "&lt;a href=&quot;x&quot;&gt;&amp;"
        );
    }
}
