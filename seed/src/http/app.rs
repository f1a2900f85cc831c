//! What every route shares: the state handlers read, the store call off the connection's
//! thread, and how a refusal becomes a response.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::files;
use crate::config::Secret;
use crate::metrics::Metrics;
use crate::mirror::Mirror;
use crate::provision::{NodeError, Nodes};
use crate::registry::Registry;

/// A client that has not sent its request headers by then is dropped (hyper's
/// `header_read_timeout`, and the zero-copy path's wait for the next request).
pub(super) const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// What the handlers share.
pub struct App {
    /// The node decisions.
    pub nodes: Arc<Nodes>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The image catalogue's directory, served as `/images/`.
    pub images: files::Root,
    /// The disk images' directory (`images::disks`), served as `/disks/`: what seed's agent
    /// writes to a node's disk.
    pub disks: files::Root,
    /// The bearer token mutating API calls must carry; `None` refuses them.
    pub api_token: Option<Secret>,
    /// The state directory (BMC certificate pins, lab QMP sockets) for power actions.
    pub state_dir: PathBuf,
    /// The APT mirror under `/apt/`, when the config has one.
    pub apt: Option<Apt>,
    /// The container registry under `/v2/` (`None`: its store could not be opened).
    pub registry: Option<Arc<Registry>>,
    /// The registry's store, served for blobs.
    pub registry_files: files::Root,
    /// The registry's pull-through upstreams, when the config names any.
    pub registry_proxy: Option<Arc<crate::registry::Proxy>>,
}

/// A refusal as a response: the status its kind maps to and the reason as text.
impl IntoResponse for NodeError {
    fn into_response(self) -> Response {
        let status = match &self {
            NodeError::NotFound(_) => StatusCode::NOT_FOUND,
            NodeError::Retired(_) | NodeError::Refused(_) => StatusCode::FORBIDDEN,
            NodeError::Invalid(_) => StatusCode::BAD_REQUEST,
            NodeError::Conflict(_) => StatusCode::CONFLICT,
            NodeError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            NodeError::Store(_) | NodeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %self, "HTTP request failed");
        }
        (status, format!("{self}\n")).into_response()
    }
}

/// Run a store-backed decision on the blocking pool.
pub(super) async fn decide<T, F>(app: &Arc<App>, f: F) -> Result<T, NodeError>
where
    T: Send + 'static,
    F: FnOnce(&Nodes) -> Result<T, NodeError> + Send + 'static,
{
    let nodes = Arc::clone(&app.nodes);
    tokio::task::spawn_blocking(move || f(&nodes))
        .await
        .unwrap_or_else(|e| Err(NodeError::Internal(format!("request task failed: {e}"))))
}

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
