//! `seed serve`: the long-running appliance.
//!
//! Opens the state store, registers the configured nodes, binds DHCP on the provisioning
//! interface, TFTP and HTTP on seed's address, and serves until SIGINT or SIGTERM. Each server
//! takes an already-bound socket and the shutdown signal; everything is bound before anything
//! runs, so a wrong address is an error at start, not a silent seed.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use super::global::Global;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::provision::{Nodes, Provisioner};
use crate::sd_notify::{self, Notifier};
use crate::store::{ServeLock, Store};
use crate::{dhcp, http, ra, tftp};

/// Threads for blocking work of the main runtime (SQLite of the stalled-install check; the HTTP
/// workers have pools of their own). tokio's default is 512.
const BLOCKING_THREADS: usize = 16;

/// How often active nodes are checked for stalled installs and for a written BIOS disk to
/// boot: every 10 s (a powered-off node waits no longer for its first boot; a round with
/// nothing to do is a few store reads), or a third of a shorter timeout so a node is failed
/// within a third of its timeout after it ran out.
fn stall_check(progress_timeout_secs: u64) -> Duration {
    Duration::from_secs((progress_timeout_secs / 3).clamp(1, 10))
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Do not serve DHCP (for trying seed on a machine without the provisioning network).
    #[arg(long)]
    no_dhcp: bool,
    /// Do not serve TFTP (it binds seed.address, which must be this machine's).
    #[arg(long)]
    no_tftp: bool,
    /// Where HTTP listens, instead of seed.address and seed.ports.http (e.g. 127.0.0.1:8080 to
    /// try seed on a machine without the provisioning network).
    #[arg(long, value_name = "ADDR:PORT")]
    http_listen: Option<SocketAddr>,
    /// Where the registry's own port listens, instead of seed.address and registry.port (it
    /// serves /v2/ only; without registry.port in the config this opens it anyway).
    #[arg(long, value_name = "ADDR:PORT")]
    registry_listen: Option<SocketAddr>,
}

pub fn run(global: &Global, args: ServeArgs) -> anyhow::Result<ExitCode> {
    // The runtime and the signal listeners first: a SIGTERM while seed starts (a process
    // manager stopping it at once) is then a graceful stop, not the default action's kill.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
        .context("cannot start the async runtime")?;
    let (shutdown, hangup) = {
        let _enter = runtime.enter();
        // SIGHUP would end the process by default; from here on it reloads the config.
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot listen for SIGHUP")?;
        (Shutdown::listen()?, hangup)
    };
    let open_files = raise_open_files();
    let config = Arc::new(global.load_config()?);
    let state_dir = global.state_dir(Some(&config));
    // One store, one server: held until this function returns (the process ends).
    let _lock = ServeLock::acquire(&state_dir)?;
    let mut store = Store::open(&state_dir)
        .with_context(|| format!("cannot open state in {}", state_dir.display()))?;

    // Bind before anything runs, so a wrong interface is an error at start, not a silent seed.
    let dhcp_socket = if args.no_dhcp {
        None
    } else {
        Some(bind_dhcp(&config)?)
    };
    let tftp_socket = if args.no_tftp {
        None
    } else {
        let addr = std::net::SocketAddr::from((config.seed.address, config.seed.ports.tftp));
        Some(std::net::UdpSocket::bind(addr).and_then(|s| s.set_nonblocking(true).map(|()| s)).with_context(|| {
            format!("cannot bind TFTP to {addr} (seed.address must be this machine's; --no-tftp skips TFTP)")
        })?)
    };
    let http_addr = args
        .http_listen
        .unwrap_or_else(|| SocketAddr::from((config.seed.address, config.seed.ports.http)));
    let http_listener = std::net::TcpListener::bind(http_addr).with_context(|| {
        format!("cannot bind HTTP to {http_addr} (seed.address must be this machine's; --http-listen picks another)")
    })?;
    let registry_addr = args.registry_listen.or_else(|| {
        config
            .registry
            .port
            .map(|port| SocketAddr::from((config.seed.address, port)))
    });
    let registry_listener = match registry_addr {
        Some(addr) => Some(std::net::TcpListener::bind(addr).with_context(|| {
            format!("cannot bind the registry's port to {addr} (registry.port; --registry-listen picks another)")
        })?),
        None => None,
    };
    let registry_tls = match (&registry_listener, &config.registry.tls) {
        (Some(_), Some((cert, key))) => Some(
            http::tls_config(cert, key)
                .map_err(anyhow::Error::msg)
                .context("registry.tls")?,
        ),
        _ => None,
    };
    let api_token = match &config.seed.api_token {
        Some(secret) => Some(secret.resolve().context("seed.api_token")?),
        None => None,
    };
    let apt = match &config.mirror {
        Some(mirror) => Some(http::apt::Apt::new(
            crate::mirror::Mirror::new(mirror, &state_dir).context("APT mirror")?,
        )),
        None => None,
    };
    let metrics = Arc::new(Metrics::default());
    let provisioner = Arc::new(Provisioner::new(Arc::clone(&config)));
    let catalogue = images::Catalogue::new(state_dir.join("images"));
    let nodes = Arc::new(Nodes::new(
        Arc::clone(&provisioner),
        Store::open(&state_dir)?,
        catalogue.clone(),
    ));
    // Registered first: a node's timeline starts with its registration and shows this run's
    // start after it (`seed status NODE` marks a start that follows a start as a crash).
    let added = nodes.register_config()?;
    store.record_event(
        None,
        "started",
        "serve",
        &format!("config {}", config.source.display()),
    )?;
    // MACs `seed inventory` recorded are known before the first DHCP packet.
    let recorded_macs = nodes
        .refresh_inventory()
        .context("reading the recorded inventory")?
        .unwrap_or(0);
    let router_advertisements = match (&dhcp_socket, config.seed.dhcp.router_advertisements) {
        (Some(_), true) => Some(start_router_advertisements(&config.seed.interface)?),
        _ => None,
    };
    tracing::info!(
        store = %store.path().display(),
        nodes = config.nodes.len(),
        new_nodes = added,
        recorded_macs,
        dhcp = !args.no_dhcp,
        tftp = !args.no_tftp,
        http = %http_addr,
        "seed ready; waiting for SIGINT or SIGTERM"
    );

    // systemd's Type=notify (the packaged unit); nothing without NOTIFY_SOCKET.
    let notifier = Notifier::from_env().map(Arc::new);
    let signal = runtime.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let dhcp_task = match dhcp_socket {
            Some((socket, pxe_socket)) => {
                let dhcp_store = Store::open(&state_dir)?;
                Some(tokio::spawn(dhcp::serve(
                    socket,
                    pxe_socket,
                    Arc::clone(&provisioner),
                    dhcp_store,
                    Arc::clone(&metrics),
                    stopped(stop_rx.clone()),
                )))
            }
            None => None,
        };
        let tftp_task = tftp_socket.map(|socket| {
            let files = Arc::new(tftp::Files::new(config.seed.tftp_root.clone()));
            let max_blksize = tftp::max_blksize(config.provisioning_zone().mtu);
            tokio::spawn(tftp::serve(
                socket,
                files,
                max_blksize,
                Arc::clone(&metrics),
                stopped(stop_rx.clone()),
            ))
        });
        // The registry's store opens in a moment (it only empties its temporaries); a
        // failure leaves /v2/ answering that nothing is known, and says why.
        let registry = match crate::registry::Registry::open_bounded(
            &state_dir,
            config.registry.cache_bytes,
        ) {
            Ok(registry) => Some(Arc::new(registry)),
            Err(e) => {
                tracing::error!(error = %e, "container registry unavailable");
                None
            }
        };
        let registry_proxy = match (&registry, config.registry.upstreams.is_empty()) {
            (Some(registry), false) => Some(Arc::new(
                crate::registry::Proxy::new(Arc::clone(registry), &config.registry)
                    .context("container registry's upstreams")?,
            )),
            _ => None,
        };
        let app = Arc::new(http::App {
            nodes: Arc::clone(&nodes),
            metrics: Arc::clone(&metrics),
            images: http::files::Root::new(catalogue.root()),
            disks: http::files::Root::new(state_dir.join("disks")),
            api_token,
            state_dir: state_dir.clone(),
            apt,
            registry_files: http::files::Root::new(state_dir.join("registry")),
            registry_proxy,
            registry,
        });
        // The registry's port takes a quarter of the connections the open-file limit allows.
        let connections = http::max_connections(open_files);
        let (http_share, registry_share) = match &registry_listener {
            Some(_) => (connections - connections / 4, (connections / 4).max(1)),
            None => (connections, 0),
        };
        let registry_task = registry_listener.map(|listener| {
            tokio::spawn(http::serve_scope(
                listener,
                Arc::clone(&app),
                http::Scope::Registry,
                registry_tls,
                registry_share,
                stopped(stop_rx.clone()),
            ))
        });
        let http_task = tokio::spawn(http::serve(
            http_listener,
            app,
            http_share,
            stopped(stop_rx.clone()),
        ));
        let lifecycle = config.seed.lifecycle;
        let every = stall_check(
            [
                lifecycle.progress_timeout_secs,
                lifecycle.phone_home_timeout_secs,
                lifecycle.dhcp_timeout_secs,
                lifecycle.boot_timeout_secs,
                lifecycle.installer_timeout_secs,
            ]
            .into_iter()
            .filter(|t| *t > 0)
            .min()
            .unwrap_or(0),
        );
        let reload_task = tokio::spawn(follow_reloads(
            Arc::clone(&nodes),
            global.config_path(),
            hangup,
            notifier.clone(),
            stopped(stop_rx.clone()),
        ));
        let watchdog_task = match (&notifier, sd_notify::watchdog_interval()) {
            (Some(notifier), Some(every)) => Some(tokio::spawn(feed_watchdog(
                Arc::clone(&nodes),
                Arc::clone(notifier),
                every,
                stopped(stop_rx.clone()),
            ))),
            _ => None,
        };
        let inventory_task = tokio::spawn(follow_inventory(
            Arc::clone(&nodes),
            stopped(stop_rx.clone()),
        ));
        let stall_task = tokio::spawn(fail_stalled(
            Arc::clone(&nodes),
            state_dir.clone(),
            every,
            stopped(stop_rx.clone()),
        ));
        // Every socket is bound and every server runs: `systemctl start seed` returns now.
        sd_notify::notify(
            notifier.as_deref(),
            &format!(
                "READY=1\nSTATUS=serving {} nodes (HTTP {http_addr})",
                config.nodes.len()
            ),
        );
        let signal = shutdown.wait().await;
        tracing::info!(signal, "shutting down");
        sd_notify::notify(
            notifier.as_deref(),
            &format!("STOPPING=1\nSTATUS=stopping ({signal})"),
        );
        let _ = stop_tx.send(true);
        let _ = stall_task.await;
        let _ = inventory_task.await;
        if let Some(task) = watchdog_task {
            let _ = task.await;
        }
        let _ = reload_task.await;
        http_task
            .await
            .context("HTTP server task")?
            .context("HTTP server")?;
        if let Some(task) = registry_task {
            task.await
                .context("registry port task")?
                .context("registry port")?;
        }
        if let Some(task) = tftp_task {
            task.await
                .context("TFTP server task")?
                .context("TFTP server")?;
        }
        if let Some(task) = dhcp_task {
            task.await
                .context("DHCP server task")?
                .context("DHCP server")?;
        }
        anyhow::Ok(signal)
    })?;
    if let Some((stop, thread)) = router_advertisements {
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = thread.join();
    }
    store.record_event(None, "stopped", "serve", signal)?;
    Ok(ExitCode::SUCCESS)
}

/// How often `seed serve` looks for an inventory recorded while it runs (one cheap query).
const INVENTORY_POLL: Duration = Duration::from_secs(2);

/// Reload the config on SIGHUP, until `shutdown`: a config that does not check (or changes
/// what takes a restart) is refused with its errors and the running one keeps serving.
async fn follow_reloads(
    nodes: Arc<Nodes>,
    path: std::path::PathBuf,
    mut hangup: tokio::signal::unix::Signal,
    notifier: Option<Arc<Notifier>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = hangup.recv() => {}
        }
        // `systemctl reload` shows the unit reloading until READY=1 below.
        sd_notify::notify(
            notifier.as_deref(),
            "RELOADING=1\nSTATUS=reloading the config",
        );
        let nodes = Arc::clone(&nodes);
        let file = path.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let result = match crate::config::load(&file) {
                Ok(config) => nodes.reload(config).map_err(|e| e.to_string()),
                Err(e) => Err(crate::error_chain(&e)),
            };
            nodes.note_reload(&file, &result);
            result
        })
        .await;
        let status = match outcome {
            Ok(Ok(summary)) => {
                tracing::info!(config = %path.display(), %summary, "config reloaded");
                format!("serving; config reloaded: {summary}")
            }
            Ok(Err(why)) => {
                tracing::error!(
                    config = %path.display(),
                    "config reload refused; the running config keeps serving: {why}"
                );
                "serving; the last reload was refused (see the log)".to_string()
            }
            Err(e) => {
                tracing::error!(error = %e, "config reload panicked");
                "serving; the last reload failed (see the log)".to_string()
            }
        };
        // One line: STATUS= ends at the newline.
        let status = status.replace('\n', " ");
        sd_notify::notify(notifier.as_deref(), &format!("READY=1\nSTATUS={status}"));
    }
}

/// `WATCHDOG=1` every `every` while the store answers, until `shutdown`. A runtime too busy
/// to run this task, or a store that does not answer, misses the manager's deadline, and
/// `Restart=on-failure` starts seed again.
async fn feed_watchdog(
    nodes: Arc<Nodes>,
    notifier: Arc<Notifier>,
    every: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        let nodes = Arc::clone(&nodes);
        match tokio::task::spawn_blocking(move || nodes.store_answers()).await {
            Ok(Ok(())) => notifier.send("WATCHDOG=1"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the store does not answer; not feeding the watchdog")
            }
            Err(e) => tracing::error!(error = %e, "store check panicked; not feeding the watchdog"),
        }
    }
}

/// Hand DHCP the MACs `seed inventory` records, until `shutdown`.
async fn follow_inventory(nodes: Arc<Nodes>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(INVENTORY_POLL);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        let nodes = Arc::clone(&nodes);
        match tokio::task::spawn_blocking(move || nodes.refresh_inventory()).await {
            Ok(Ok(Some(macs))) => tracing::info!(
                macs,
                "recorded inventory taken: MACs from the BMCs recognised in DHCP"
            ),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot read the recorded inventory"),
            Err(e) => tracing::error!(error = %e, "inventory refresh panicked"),
        }
    }
}

/// Fail installs that stopped making progress, until `shutdown`.
async fn fail_stalled(
    nodes: Arc<Nodes>,
    state_dir: std::path::PathBuf,
    every: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        let nodes = Arc::clone(&nodes);
        let state_dir = state_dir.clone();
        // Phases first (a node that missed one is started again), then the overall timeouts.
        let round = tokio::task::spawn_blocking(move || {
            let supervised = crate::provision::supervise::run(&nodes, &state_dir);
            (supervised, nodes.fail_stalled())
        })
        .await;
        match round {
            Ok((supervised, stalled)) => {
                match supervised {
                    Ok(done) => {
                        for line in done {
                            tracing::warn!("{line}");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot check the boot phases"),
                }
                match stalled {
                    Ok(failed) if !failed.is_empty() => {
                        tracing::warn!(?failed, "installs without progress marked failed");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "cannot check for stalled installs"),
                }
            }
            Err(e) => tracing::error!(error = %e, "stalled-install check panicked"),
        }
    }
}

/// The DHCP socket on the provisioning interface (and in proxy mode the PXE port 4011), after
/// checking that the interface carries seed's address: a DHCP server on the wrong network hands
/// out addresses to machines that are not ours, so a mismatch is a refusal, not a warning.
fn bind_dhcp(
    config: &Config,
) -> anyhow::Result<(std::net::UdpSocket, Option<std::net::UdpSocket>)> {
    let iface = &config.seed.interface;
    let address = config.seed.address;
    let addresses = interface_addresses(iface)?;
    if addresses.is_empty() {
        bail!(
            "interface {iface} (seed.interface) does not exist or has no IPv4 address; \
             refusing to serve DHCP (use --no-dhcp to run without it)"
        );
    }
    if !addresses.contains(&address) {
        bail!(
            "interface {iface} carries {} but not seed.address {address}; refusing to serve DHCP on it",
            addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let bind = |port: u16| {
        dhcp::bind(iface, port).with_context(|| {
            format!("cannot bind DHCP to {iface} port {port} (root, or CAP_NET_BIND_SERVICE and CAP_NET_RAW, is needed)")
        })
    };
    let socket = bind(config.seed.ports.dhcp)?;
    let pxe = if config.seed.dhcp.proxy {
        Some(bind(dhcp::PXE_PORT)?)
    } else {
        None
    };
    Ok((socket, pxe))
}

/// IPv6 router advertisements (no prefix) on the provisioning interface, on a thread of their
/// own; the returned flag stops it.
fn start_router_advertisements(
    iface: &str,
) -> anyhow::Result<(
    Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<()>,
)> {
    let (ifindex, mac) =
        ra::interface_info(iface).with_context(|| format!("cannot read interface {iface}"))?;
    let socket = ra::bind(iface).with_context(|| {
        format!("cannot open an ICMPv6 socket on {iface} for router advertisements (seed.dhcp.router_advertisements: false turns them off)")
    })?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("router-adverts".into())
        .spawn(move || ra::run(&socket, ifindex, mac, &flag))
        .context("cannot start the router advertisement thread")?;
    Ok((stop, thread))
}

fn interface_addresses(iface: &str) -> anyhow::Result<Vec<Ipv4Addr>> {
    let addrs = nix::ifaddrs::getifaddrs().context("cannot list network interfaces")?;
    Ok(addrs
        .filter(|a| a.interface_name == iface)
        .filter_map(|a| {
            a.address
                .and_then(|s| s.as_sockaddr_in().map(|sin| sin.ip()))
        })
        .collect())
}

/// SIGINT and SIGTERM, listened for from the start.
struct Shutdown {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Shutdown {
    /// Starts listening (inside the runtime's context).
    fn listen() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
        })
    }

    /// Resolves with the name of the first of SIGINT or SIGTERM (also one that came while
    /// seed started).
    async fn wait(mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Raise the soft open-file limit to the hard one, as servers do (the common soft default of
/// 1,024 is below what a rack booting at once needs); the limit in force, which sizes HTTP's
/// connection cap. Says so when it cannot.
fn raise_open_files() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        tracing::warn!("cannot read the open-file limit; assuming 1024");
        return 1024;
    };
    if soft >= hard {
        return soft;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            tracing::info!(from = soft, to = hard, "open-file limit raised");
            hard
        }
        Err(e) => {
            tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit; HTTP takes fewer connections");
            soft
        }
    }
}
