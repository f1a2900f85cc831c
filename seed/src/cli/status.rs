//! `seed status`: every node and its lifecycle state, from the store.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use super::global::Global;
use super::table::Table;
use crate::agent::inspect::Inspection;
use crate::lifecycle::{NodeState, duration_text};
use crate::net::printable;
use crate::store::{Event, Store, now_ms};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One node's timeline instead: every event of it, with seed's own starts and stops (its
    /// outages) in between.
    node: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Row {
    name: String,
    role: Option<String>,
    state: NodeState,
    /// ms since the Unix epoch; `None` for a configured node seed has not registered yet.
    updated_at: Option<i64>,
    in_config: bool,
    last_event: Option<Event>,
}

pub fn run(global: &Global, args: StatusArgs) -> anyhow::Result<ExitCode> {
    // The config is optional here: status of a store can be read without one.
    let config = global.optional_config()?;
    let state_dir = global.state_dir(config.as_ref());
    // A status never creates state: a mistyped --state-dir must not leave a database (and a
    // directory) behind, and an empty table must not look like an empty rack.
    let store = Store::open_existing(&state_dir)
        .with_context(|| format!("cannot read state in {}", state_dir.display()))?;
    let db = state_dir.join(crate::store::DB_FILE);
    if let Some(name) = &args.node {
        let Some(store) = &store else {
            anyhow::bail!("{name}: no state in {} yet", db.display());
        };
        return timeline(store, name, args.json);
    }
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for node in config.iter().flat_map(|c| &c.nodes) {
        rows.insert(
            node.name.clone(),
            Row {
                name: node.name.clone(),
                role: Some(node.role.clone()),
                state: NodeState::Ready,
                updated_at: None,
                in_config: true,
                last_event: None,
            },
        );
    }
    let records = match &store {
        Some(store) => store.nodes()?,
        None => Vec::new(),
    };
    for record in records {
        let row = rows.entry(record.name.clone()).or_insert(Row {
            name: record.name.clone(),
            role: None,
            state: record.state,
            updated_at: None,
            in_config: false,
            last_event: None,
        });
        row.state = record.state;
        row.updated_at = Some(record.updated_at);
        row.last_event = record.last_event;
    }
    let discovered = match &store {
        Some(store) => store.discovered()?,
        None => Vec::new(),
    };
    // What the seed host's disk holds: images, the container registry, the APT mirror's cache.
    let images_bytes = images::Catalogue::new(state_dir.join("images")).disk_usage();
    let registry_bytes = images::disk_usage(&state_dir.join("registry"));
    let disk_images_bytes = images::disk_usage(&state_dir.join("disks"));
    let mirror = config.as_ref().and_then(|c| c.mirror.as_ref());
    let mirror_bytes = mirror.map(|m| images::disk_usage(&m.cache_dir(&state_dir)));
    let mirror_limit = mirror.map(|m| m.cache_bytes);
    if args.json {
        let rows: Vec<&Row> = rows.values().collect();
        let json = serde_json::json!({
            "nodes": rows,
            "discovered": discovered,
            "disk": {
                "images_bytes": images_bytes,
                "disk_images_bytes": disk_images_bytes,
                "registry_bytes": registry_bytes,
                "mirror_cache_bytes": mirror_bytes,
                "mirror_cache_limit_bytes": mirror_limit,
            },
            "state": { "database": db, "exists": store.is_some() },
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now = now_ms();
    let mut table = Table::new(&["NODE", "ROLE", "STATE", "FOR", "SINCE (UTC)", "LAST EVENT"]);
    for row in rows.values() {
        let role = row.role.clone().unwrap_or_else(|| "(not in config)".into());
        let (age, since) = row.updated_at.map_or_else(
            || ("-".into(), "(not registered yet)".into()),
            |at| (duration_text(now - at), utc_timestamp(at)),
        );
        let last = row.last_event.as_ref().map_or_else(
            || "-".into(),
            |e| {
                let detail: String = printable(&e.detail).chars().take(72).collect();
                format!(
                    "{} ago {} ({}): {detail}",
                    duration_text(now - e.at),
                    e.kind,
                    e.source
                )
            },
        );
        table.row(vec![
            row.name.clone(),
            role,
            row.state.to_string(),
            age,
            since,
            last,
        ]);
    }
    if rows.is_empty() {
        println!("no nodes");
    } else {
        print!("{}", table.render());
    }
    match &store {
        Some(_) => println!("\nstate: {}", db.display()),
        None => println!(
            "\nstate: none: {} does not exist (seed has not served or provisioned with this \
             state directory; --state-dir or the config's seed.state_dir names another)",
            db.display()
        ),
    }
    println!(
        "disk: images {}, disk images {}, container registry {}{}",
        super::table::size(images_bytes),
        super::table::size(disk_images_bytes),
        super::table::size(registry_bytes),
        mirror_bytes
            .zip(mirror_limit)
            .map_or(String::new(), |(b, limit)| format!(
                ", APT mirror cache {} of {} (least recently used packages go beyond)",
                super::table::size(b),
                super::table::size(limit)
            ))
    );
    if !discovered.is_empty() {
        println!(
            "\nDiscovered in DHCP, not in the config (seed adopt MAC --name N --role R --bmc ADDRESS makes one a node):"
        );
        let mut table = Table::new(&[
            "MAC",
            "FIRST SEEN",
            "LAST SEEN",
            "ARCH",
            "VENDOR CLASS",
            "ADDRESS",
            "ZONE",
            "RELAY",
            "ENLISTED",
        ]);
        for d in &discovered {
            // What seed's agent found, for an enlisted machine (seed.enlist).
            let enlisted = match (&store, d.inspected_at) {
                (Some(store), Some(at)) => match store.discovered_one(d.mac)? {
                    Some((_, Some(i))) => format!("{}: {}", utc_timestamp(at), i.summary()),
                    _ => "-".into(),
                },
                _ => "-".into(),
            };
            table.row(vec![
                d.mac.to_string(),
                utc_timestamp(d.first_seen),
                utc_timestamp(d.last_seen),
                d.arch.map_or_else(|| "-".into(), |a| a.to_string()),
                d.vendor_class.clone().unwrap_or_else(|| "-".into()),
                d.address.map_or_else(|| "-".into(), |a| a.to_string()),
                d.zone.clone().unwrap_or_else(|| "-".into()),
                d.relay.map_or_else(|| "-".into(), |a| a.to_string()),
                crate::net::printable(&enlisted),
            ]);
        }
        print!("{}", table.render());
    }
    Ok(ExitCode::SUCCESS)
}

/// A node's timeline: its events (the newest 1000), and seed's own starts and stops since its
/// first one; a start that follows a start is an outage seed did not see coming (a crash, a
/// power cut), and says so.
fn timeline(store: &Store, name: &str, json: bool) -> anyhow::Result<ExitCode> {
    let Some(record) = store.node(name)? else {
        anyhow::bail!("no node named {name} in the state database");
    };
    let events = store.events(Some(name), 1000)?;
    let since = events.first().map_or(record.updated_at, |e| e.at);
    let serve = store.serve_events(since)?;
    let mut all: Vec<&Event> = events.iter().chain(serve.iter()).collect();
    all.sort_by_key(|e| e.id);
    let inspection = store.inspection(name)?;
    if json {
        let inspection = inspection
            .as_ref()
            .map(|(at, i)| serde_json::json!({ "taken_at": at, "hardware": i }));
        let json = serde_json::json!({
            "node": name,
            "state": record.state,
            "events": all,
            "inspection": inspection,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{name}: {} since {}",
        record.state,
        utc_timestamp(record.updated_at)
    );
    let mut table = Table::new(&["TIME (UTC)", "SOURCE", "KIND", "WHAT"]);
    let mut last_serve: Option<&str> = None;
    for e in all {
        let mut what = printable(&e.detail);
        if e.node.is_none() {
            if e.kind == "started" && last_serve == Some("started") {
                what = format!("{what} (the run before ended without a stop: crashed or killed)");
            }
            what = format!("seed {}: {what}", e.kind);
            last_serve = Some(e.kind.as_str());
        }
        table.row(vec![
            utc_timestamp(e.at),
            e.source.clone(),
            e.kind.clone(),
            what,
        ]);
    }
    print!("{}", table.render());
    if let Some((at, inspection)) = &inspection {
        print_inspection(*at, inspection);
    }
    Ok(ExitCode::SUCCESS)
}

/// What the agent found, as udev names it: what a disk rule (`disk:` of a role) matches.
fn print_inspection(at: i64, inspection: &Inspection) {
    println!(
        "\nhardware (seed's agent, {}): {}",
        utc_timestamp(at),
        printable(&inspection.summary())
    );
    let text = |v: &Option<String>| v.as_deref().map_or_else(|| "-".into(), printable);
    let mut nics = Table::new(&["NIC", "MAC", "DRIVER", "PCI", "LINK"]);
    for nic in &inspection.nics {
        let link = match (nic.link, nic.speed_mbps) {
            (Some(true), Some(speed)) => format!("up {speed} Mb/s"),
            (Some(true), None) => "up".into(),
            (Some(false), _) => "no carrier".into(),
            (None, _) => "-".into(),
        };
        nics.row(vec![
            printable(&nic.name),
            nic.mac.to_string(),
            text(&nic.driver),
            text(&nic.pci),
            link,
        ]);
    }
    if !inspection.nics.is_empty() {
        print!("{}", nics.render());
    }
    let mut disks = Table::new(&["DISK", "SIZE", "ID_SERIAL", "ID_MODEL", "ID_PATH", "WWN"]);
    for d in &inspection.disks {
        let kind = if d.rotational { "HDD" } else { "SSD" };
        disks.row(vec![
            printable(&d.path),
            format!("{} {kind}", super::table::size(d.size)),
            printable(&d.id_serial),
            printable(&d.id_model),
            printable(&d.id_path),
            printable(&d.id_wwn),
        ]);
    }
    if !inspection.disks.is_empty() {
        print!("{}", disks.render());
    }
}

/// `2026-11-21 13:55:02` from ms since the Unix epoch (UTC; days to civil date after
/// Howard Hinnant's `civil_from_days`).
fn utc_timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::utc_timestamp;

    #[test]
    fn timestamps_are_civil_utc() {
        assert_eq!(utc_timestamp(0), "1970-01-01 00:00:00");
        assert_eq!(utc_timestamp(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc_timestamp(1_795_269_302_000), "2026-11-21 13:55:02");
    }
}
