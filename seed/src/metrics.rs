//! Counters the servers bump and `/metrics` prints in the Prometheus text format (0.0.4).
//!
//! Plain atomics: a packet loop must not take a lock to count. Node states are not counted
//! here; `/metrics` reads them from the store when it is scraped.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::lifecycle::NodeState;
use crate::provision::Unanswered;

/// DHCP message types, in the order of their option 53 codes (RFC 2132 9.6).
pub const DHCP_TYPES: [&str; 8] = [
    "discover", "offer", "request", "decline", "ack", "nak", "release", "inform",
];

/// Groups of HTTP routes, for the request counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/boot.ipxe`.
    Boot,
    /// `/ipxe/…` (UEFI HTTP boot).
    Ipxe,
    /// `/images/…` and `/disks/…` (installer and disk images).
    Images,
    /// `/nodes/<token>/…`.
    Nodes,
    /// `/api/…`.
    Api,
    /// `/metrics` and the status page.
    Status,
    /// `/apt/…` (the APT mirror).
    Apt,
    /// `/v2/…` (the container registry).
    Registry,
    /// Anything else.
    Other,
}

impl Route {
    /// The group a request path is counted in.
    pub fn of(path: &str) -> Self {
        let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
        match first {
            "boot.ipxe" => Self::Boot,
            "ipxe" => Self::Ipxe,
            "images" | "disks" => Self::Images,
            "nodes" => Self::Nodes,
            "api" => Self::Api,
            "metrics" | "" => Self::Status,
            "apt" => Self::Apt,
            "v2" => Self::Registry,
            _ => Self::Other,
        }
    }

    const ALL: [Route; 9] = [
        Self::Boot,
        Self::Ipxe,
        Self::Images,
        Self::Nodes,
        Self::Api,
        Self::Status,
        Self::Apt,
        Self::Registry,
        Self::Other,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Boot => "boot",
            Self::Ipxe => "ipxe",
            Self::Images => "images",
            Self::Nodes => "nodes",
            Self::Api => "api",
            Self::Status => "status",
            Self::Apt => "apt",
            Self::Registry => "registry",
            Self::Other => "other",
        }
    }
}

/// How TFTP transfers ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TftpOutcome {
    /// The whole file was acknowledged.
    Completed,
    /// The client ended it (the tsize probe of PXE ROMs ends this way).
    Aborted,
    /// Refused (no such file, a path outside the root) or timed out.
    Failed,
}

/// What `/metrics` reads from the store and the mirror when it is asked.
#[derive(Debug, Default)]
pub struct Readings {
    /// How many nodes are in each state (states not named have none).
    pub nodes: Vec<(NodeState, u64)>,
    /// Files the APT mirror downloaded, when there is a mirror.
    pub apt_upstream_fetches: Option<u64>,
    /// The registry's pull-through cache, when it has upstreams.
    pub registry_proxy: Option<ProxyCounts>,
    /// Each registry upstream's prefix and whether it is taken as reachable (its circuit
    /// breaker closed).
    pub registry_upstreams: Vec<(String, bool)>,
}

/// How the registry's pull-through cache answered, since seed started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProxyCounts {
    /// Manifests and blobs fetched from upstreams.
    pub upstream_fetches: u64,
    /// Requests for an upstream's repository answered from the store.
    pub hits: u64,
    /// Requests that waited for the upstream (a fetch of their own or one they joined).
    pub misses: u64,
    /// Tags served as stored because their upstream could not be reached.
    pub stale: u64,
}

/// seed's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    dhcp_received: [AtomicU64; 8],
    dhcp_sent: [AtomicU64; 8],
    dhcp_dropped: AtomicU64,
    dhcp_unanswered: [AtomicU64; Unanswered::KINDS.len()],
    tftp: [AtomicU64; 3],
    tftp_bytes: AtomicU64,
    // Route × status class (1xx..5xx).
    http: [[AtomicU64; 5]; Route::ALL.len()],
    http_sendfile_bytes: AtomicU64,
    // Manifests, blobs.
    registry_pulls: [AtomicU64; 2],
    registry_bytes: AtomicU64,
}

/// What a registry client pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pulled {
    /// A manifest or index (GET or HEAD answered 200).
    Manifest,
    /// A blob (GET answered 200 or 206).
    Blob,
}

fn dhcp_index(kind: u8) -> Option<usize> {
    (1..=8).contains(&kind).then(|| usize::from(kind - 1))
}

impl Metrics {
    /// A DHCP packet of option 53 type `kind` arrived.
    pub fn dhcp_received(&self, kind: u8) {
        match dhcp_index(kind) {
            Some(i) => self.dhcp_received[i].fetch_add(1, Ordering::Relaxed),
            None => self.dhcp_dropped.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// A DHCP packet that did not parse, or was rate limited.
    pub fn dhcp_dropped(&self) {
        self.dhcp_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// A DHCP request got no answer, for `why`.
    pub fn dhcp_unanswered(&self, why: &Unanswered) {
        self.dhcp_unanswered[why.kind()].fetch_add(1, Ordering::Relaxed);
    }

    /// A DHCP reply of type `kind` was sent.
    pub fn dhcp_sent(&self, kind: u8) {
        if let Some(i) = dhcp_index(kind) {
            self.dhcp_sent[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A TFTP transfer ended after sending `bytes` of file data.
    pub fn tftp_transfer(&self, outcome: TftpOutcome, bytes: u64) {
        self.tftp[outcome as usize].fetch_add(1, Ordering::Relaxed);
        self.tftp_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// An HTTP request was answered with `status`.
    pub fn http_request(&self, route: Route, status: u16) {
        let class = usize::from((status / 100).clamp(1, 5) - 1);
        self.http[route as usize][class].fetch_add(1, Ordering::Relaxed);
    }

    /// `bytes` of a file went to an HTTP client by sendfile (no copy through seed).
    pub fn http_sendfile(&self, bytes: u64) {
        self.http_sendfile_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A registry client got a manifest or a blob, `bytes` long (the body answered: a range's
    /// length; a transfer cut short still counts whole).
    pub fn registry_pull(&self, what: Pulled, bytes: u64) {
        self.registry_pulls[what as usize].fetch_add(1, Ordering::Relaxed);
        self.registry_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The counters, and what `now` read elsewhere, as Prometheus text.
    pub fn render(&self, now: &Readings) -> String {
        let nodes = &now.nodes;
        let mut out = String::new();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        out.push_str(
            "# HELP seed_dhcp_packets_total DHCP packets by message type and direction.\n",
        );
        out.push_str("# TYPE seed_dhcp_packets_total counter\n");
        for (i, kind) in DHCP_TYPES.iter().enumerate() {
            for (direction, counters) in [("in", &self.dhcp_received), ("out", &self.dhcp_sent)] {
                let _ = writeln!(
                    out,
                    "seed_dhcp_packets_total{{type=\"{kind}\",direction=\"{direction}\"}} {}",
                    get(&counters[i])
                );
            }
        }
        out.push_str(
            "# HELP seed_dhcp_dropped_total DHCP packets dropped: malformed or rate limited.\n",
        );
        out.push_str("# TYPE seed_dhcp_dropped_total counter\n");
        let _ = writeln!(out, "seed_dhcp_dropped_total {}", get(&self.dhcp_dropped));
        out.push_str(
            "# HELP seed_dhcp_unanswered_total DHCP requests seed decided not to answer, by reason.\n",
        );
        out.push_str("# TYPE seed_dhcp_unanswered_total counter\n");
        for (reason, counter) in Unanswered::KINDS.iter().zip(&self.dhcp_unanswered) {
            let _ = writeln!(
                out,
                "seed_dhcp_unanswered_total{{reason=\"{reason}\"}} {}",
                get(counter)
            );
        }
        out.push_str("# HELP seed_tftp_transfers_total TFTP transfers by outcome.\n");
        out.push_str("# TYPE seed_tftp_transfers_total counter\n");
        for (i, outcome) in ["completed", "aborted", "failed"].iter().enumerate() {
            let _ = writeln!(
                out,
                "seed_tftp_transfers_total{{outcome=\"{outcome}\"}} {}",
                get(&self.tftp[i])
            );
        }
        out.push_str("# HELP seed_tftp_bytes_total File bytes sent over TFTP.\n");
        out.push_str("# TYPE seed_tftp_bytes_total counter\n");
        let _ = writeln!(out, "seed_tftp_bytes_total {}", get(&self.tftp_bytes));
        out.push_str("# HELP seed_http_requests_total HTTP requests by route and status class.\n");
        out.push_str("# TYPE seed_http_requests_total counter\n");
        for route in Route::ALL {
            for (class, counter) in self.http[route as usize].iter().enumerate() {
                let _ = writeln!(
                    out,
                    "seed_http_requests_total{{route=\"{}\",code=\"{}xx\"}} {}",
                    route.name(),
                    class + 1,
                    get(counter)
                );
            }
        }
        out.push_str(
            "# HELP seed_http_sendfile_bytes_total File bytes sent to HTTP clients with sendfile (not copied through seed).\n",
        );
        out.push_str("# TYPE seed_http_sendfile_bytes_total counter\n");
        let _ = writeln!(
            out,
            "seed_http_sendfile_bytes_total {}",
            get(&self.http_sendfile_bytes)
        );
        out.push_str(
            "# HELP seed_registry_pulls_total Manifests and blobs the container registry served.\n",
        );
        out.push_str("# TYPE seed_registry_pulls_total counter\n");
        for (i, kind) in ["manifest", "blob"].iter().enumerate() {
            let _ = writeln!(
                out,
                "seed_registry_pulls_total{{kind=\"{kind}\"}} {}",
                get(&self.registry_pulls[i])
            );
        }
        out.push_str(
            "# HELP seed_registry_pulled_bytes_total Bytes of manifests and blobs the container registry answered with.\n",
        );
        out.push_str("# TYPE seed_registry_pulled_bytes_total counter\n");
        let _ = writeln!(
            out,
            "seed_registry_pulled_bytes_total {}",
            get(&self.registry_bytes)
        );
        out.push_str("# HELP seed_nodes Nodes by lifecycle state.\n");
        out.push_str("# TYPE seed_nodes gauge\n");
        for state in NodeState::ALL {
            let n = nodes
                .iter()
                .find(|(s, _)| *s == state)
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(out, "seed_nodes{{state=\"{state}\"}} {n}");
        }
        if let Some(fetches) = now.apt_upstream_fetches {
            out.push_str(
                "# HELP seed_apt_upstream_fetches_total Files the APT mirror downloaded from its upstreams.\n",
            );
            out.push_str("# TYPE seed_apt_upstream_fetches_total counter\n");
            let _ = writeln!(out, "seed_apt_upstream_fetches_total {fetches}");
        }
        if let Some(proxy) = now.registry_proxy {
            out.push_str(
                "# HELP seed_registry_upstream_fetches_total Manifests and blobs the registry fetched from its upstreams.\n",
            );
            out.push_str("# TYPE seed_registry_upstream_fetches_total counter\n");
            let _ = writeln!(
                out,
                "seed_registry_upstream_fetches_total {}",
                proxy.upstream_fetches
            );
            out.push_str(
                "# HELP seed_registry_cache_requests_total Requests for an upstream's repository: answered from the store (hit), after the upstream (miss), or as stored while the upstream was unreachable (stale).\n",
            );
            out.push_str("# TYPE seed_registry_cache_requests_total counter\n");
            for (result, n) in [
                ("hit", proxy.hits),
                ("miss", proxy.misses),
                ("stale", proxy.stale),
            ] {
                let _ = writeln!(
                    out,
                    "seed_registry_cache_requests_total{{result=\"{result}\"}} {n}"
                );
            }
        }
        if !now.registry_upstreams.is_empty() {
            out.push_str(
                "# HELP seed_registry_upstream_up Whether seed asks the upstream (1), or serves stored tags and refuses the rest without asking it, for a while after it could not be reached (0).\n",
            );
            out.push_str("# TYPE seed_registry_upstream_up gauge\n");
            for (prefix, up) in &now.registry_upstreams {
                let label = prefix.replace('\\', "\\\\").replace('"', "\\\"");
                let _ = writeln!(
                    out,
                    "seed_registry_upstream_up{{prefix=\"{label}\"}} {}",
                    u8::from(*up)
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_in_the_text_format() {
        let m = Metrics::default();
        m.dhcp_received(1);
        m.dhcp_received(1);
        m.dhcp_sent(2);
        m.dhcp_received(42);
        m.dhcp_unanswered(&Unanswered::NoPool("management".into()));
        m.tftp_transfer(TftpOutcome::Completed, 1000);
        m.http_request(Route::Boot, 200);
        m.http_request(Route::Nodes, 404);
        m.registry_pull(Pulled::Blob, 1000);
        m.registry_pull(Pulled::Manifest, 24);
        m.http_sendfile(4096);
        let text = m.render(&Readings {
            nodes: vec![(NodeState::Ready, 3)],
            apt_upstream_fetches: Some(7),
            registry_proxy: Some(ProxyCounts {
                upstream_fetches: 3,
                hits: 5,
                misses: 2,
                stale: 1,
            }),
            registry_upstreams: vec![("quay.io".into(), true), ("docker.io".into(), false)],
        });
        for line in [
            "seed_registry_upstream_up{prefix=\"quay.io\"} 1",
            "seed_registry_upstream_up{prefix=\"docker.io\"} 0",
            "seed_dhcp_packets_total{type=\"discover\",direction=\"in\"} 2",
            "seed_dhcp_packets_total{type=\"offer\",direction=\"out\"} 1",
            "seed_dhcp_dropped_total 1",
            "seed_dhcp_unanswered_total{reason=\"no_pool\"} 1",
            "seed_dhcp_unanswered_total{reason=\"pool_full\"} 0",
            "seed_tftp_transfers_total{outcome=\"completed\"} 1",
            "seed_tftp_bytes_total 1000",
            "seed_http_requests_total{route=\"boot\",code=\"2xx\"} 1",
            "seed_http_requests_total{route=\"nodes\",code=\"4xx\"} 1",
            "seed_nodes{state=\"ready\"} 3",
            "seed_nodes{state=\"failed\"} 0",
            "seed_apt_upstream_fetches_total 7",
            "seed_registry_upstream_fetches_total 3",
            "seed_registry_pulls_total{kind=\"blob\"} 1",
            "seed_registry_pulls_total{kind=\"manifest\"} 1",
            "seed_registry_pulled_bytes_total 1024",
            "seed_registry_cache_requests_total{result=\"hit\"} 5",
            "seed_registry_cache_requests_total{result=\"miss\"} 2",
            "seed_registry_cache_requests_total{result=\"stale\"} 1",
            "seed_http_sendfile_bytes_total 4096",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
