//! `seed:`: the seed host (address, ports, URL, DHCP, lifecycle, API token), and where it sits.

use super::*;

pub(super) fn seed_host(w: &wire::SeedWire) -> SeedHost {
    let defaults = Ports::default();
    let ports = Ports {
        dhcp: w.ports.dhcp.unwrap_or(defaults.dhcp),
        tftp: w.ports.tftp.unwrap_or(defaults.tftp),
        http: w.ports.http.unwrap_or(defaults.http),
    };
    // An IP literal, not a name: a node in the installer may have no working DNS yet.
    let url = match &w.url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None if ports.http == 80 => format!("http://{}", w.address),
        None => format!("http://{}:{}", w.address, ports.http),
    };
    SeedHost {
        interface: w.interface.clone(),
        address: w.address,
        url,
        ports,
        state_dir: w
            .state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
        dhcp: DhcpSettings {
            proxy: w.dhcp.proxy.unwrap_or(false),
            // Long enough that a node does not renew during an install, short enough that a
            // pool address of a vanished machine comes back within the hour.
            lease_secs: w.dhcp.lease_time.unwrap_or(3600),
            router_advertisements: w.dhcp.router_advertisements.unwrap_or(true),
        },
        tftp_root: w.tftp_root.clone(),
        api_token: w.api_token.as_ref().map(secret_ref),
        // Set once `install.agent_image` is known (validate).
        enlist: None,
        lifecycle: {
            let d = Lifecycle::default();
            Lifecycle {
                install_attempts: w.lifecycle.install_attempts.unwrap_or(d.install_attempts),
                progress_timeout_secs: w
                    .lifecycle
                    .progress_timeout
                    .unwrap_or(d.progress_timeout_secs),
                phone_home_timeout_secs: w
                    .lifecycle
                    .phone_home_timeout
                    .unwrap_or(d.phone_home_timeout_secs),
                callback_grace_secs: w.lifecycle.callback_grace.unwrap_or(d.callback_grace_secs),
                dhcp_timeout_secs: w.lifecycle.dhcp_timeout.unwrap_or(d.dhcp_timeout_secs),
                boot_timeout_secs: w.lifecycle.boot_timeout.unwrap_or(d.boot_timeout_secs),
                installer_timeout_secs: w
                    .lifecycle
                    .installer_timeout
                    .unwrap_or(d.installer_timeout_secs),
            }
        },
    }
}

pub(super) fn secret_ref(w: &wire::SecretRefWire) -> SecretRef {
    match w {
        wire::SecretRefWire::Env(var) => SecretRef::Env(var.clone()),
        wire::SecretRefWire::File(path) => SecretRef::File(path.clone()),
    }
}

pub(super) fn seed_in_provisioning_zone(v: &mut Validator, line: Option<u64>, config: &Config) {
    let Some(zone) = config.zones.iter().find(|z| z.provisioning) else {
        return;
    };
    let addr = config.seed.address;
    let net = &zone.subnet;
    if !net.contains(addr) || addr == net.network() || addr == net.broadcast() {
        v.problem(
            line,
            "seed.address",
            format!(
                "{addr} is not a host address of the provisioning zone {} ({net})",
                zone.name
            ),
        );
    } else if zone.gateway == Some(addr) {
        v.problem(
            line,
            "seed.address",
            format!("{addr} is the gateway of zone {}", zone.name),
        );
    }
    check_url(v, line, "seed.url", &config.seed.url);
    if !(60..=86_400 * 7).contains(&config.seed.dhcp.lease_secs) {
        v.problem(
            line,
            "seed.dhcp.lease_time",
            format!(
                "{} s is outside 60 s to 7 days",
                config.seed.dhcp.lease_secs
            ),
        );
    }
    let lifecycle = config.seed.lifecycle;
    if !(1..=10).contains(&lifecycle.install_attempts) {
        v.problem(
            line,
            "seed.lifecycle.install_attempts",
            format!("{} is outside 1-10", lifecycle.install_attempts),
        );
    }
    // A lab's stand-in installer reports within seconds; subiquity on a rack can be quiet for
    // minutes (keep an hour there). Below 30 s even a TCG virtual machine's firmware is slower.
    if (1..30).contains(&lifecycle.progress_timeout_secs) {
        v.problem(
            line,
            "seed.lifecycle.progress_timeout",
            format!(
                "{} s is shorter than a network boot takes (at least 30 s, or 0 for never)",
                lifecycle.progress_timeout_secs
            ),
        );
    }
    if (1..30).contains(&lifecycle.phone_home_timeout_secs) {
        v.problem(
            line,
            "seed.lifecycle.phone_home_timeout",
            format!(
                "{} s is shorter than a reboot takes (at least 30 s, or 0 for never)",
                lifecycle.phone_home_timeout_secs
            ),
        );
    }
    if config.seed.interface.is_empty() {
        v.problem(
            line,
            "seed.interface",
            "the provisioning interface must be named",
        );
    }
}

/// URLs end up in kernel command lines and shell commands of the installer: only plain
/// characters, so nothing needs quoting on the way.
pub(super) fn check_url(v: &mut Validator, line: Option<u64>, field: &str, url: &str) {
    let plain = url
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~:/[]%@+=,".contains(c));
    if !(url.starts_with("http://") || url.starts_with("https://")) || !plain {
        v.problem(
            line,
            field,
            format!("`{url}` is not a plain http:// or https:// URL (no spaces, quotes or shell characters)"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{problems_after, refused};

    #[test]
    fn the_seed_host_must_be_in_the_provisioning_zone_and_not_its_gateway() {
        refused(
            "  address: 10.1.10.5\n",
            "  address: 10.1.20.5\n",
            "seed.address",
            "provisioning zone",
        );
        refused(
            "  address: 10.1.10.5\n",
            "  address: 10.1.10.1\n",
            "seed.address",
            "is the gateway of zone management",
        );
    }

    #[test]
    fn lifecycle_bounds_and_urls() {
        refused(
            "  state_dir: /var/lib/seed\n",
            "  state_dir: /var/lib/seed\n  lifecycle: { install_attempts: 0 }\n",
            "seed.lifecycle.install_attempts",
            "outside 1-10",
        );
        refused(
            "  # url: http://10.1.10.5 ",
            "  url: ftp://10.1.10.5\n  # ",
            "seed.url",
            "is not a plain http:// or https:// URL",
        );
        assert!(problems_after("  interface: eno1 ", "  interface: eno1 ").is_empty());
    }
}
