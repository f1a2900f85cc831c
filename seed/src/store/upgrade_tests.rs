//! Upgrades: a store written by every schema version seed has shipped opens in this binary
//! with its nodes, leases, events and the rest intact, and a released migration never changes.
//!
//! Each test writes a store the way the seed of that version left it: the migrations up to
//! that version and rows in that version's columns only (the INSERTs below name no column a
//! later migration added), then opens it with [`Store::open_file`].

use rusqlite::{Connection, params};
use sha2::{Digest, Sha256};

use super::*;

/// A store at schema `version`, with rows in that version's columns.
fn written_by(version: u32, path: &Path) {
    let conn = Connection::open(path).unwrap();
    // What every released seed set at open (journal mode is in the file; WAL since version 1).
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    for (i, sql) in MIGRATIONS.iter().take(version as usize).enumerate() {
        conn.execute_batch(sql).unwrap();
        conn.pragma_update(None, "user_version", i as u32 + 1)
            .unwrap();
    }
    let v = version;
    conn.execute_batch(
        "INSERT INTO nodes (name, state, updated_at) VALUES
            ('ctl1', 'installed', 1000), ('cmp1', 'provisioning', 2000), ('stor1', 'failed', 3000);
         INSERT INTO events (at, node, kind, source, detail) VALUES
            (900, 'ctl1', 'registered', 'config', ''),
            (950, NULL, 'started', 'serve', 'config /etc/seed/seed.yaml'),
            (1000, 'ctl1', 'state', 'installer', 'installing -> installed'),
            (2000, 'cmp1', 'state', 'cli', 'ready -> provisioning');
         INSERT INTO leases (mac, ip, node, expires_at, updated_at) VALUES
            ('52:54:00:00:00:01', '10.1.10.11', 'ctl1', 9000000000000, 1000),
            ('52:54:00:00:00:99', '10.1.10.200', NULL, 9000000000000, 1500);",
    )
    .unwrap();
    if v >= 2 {
        conn.execute(
            "INSERT INTO discovered (mac, first_seen, last_seen, vendor_class, arch, address)
             VALUES ('52:54:00:00:00:99', 1400, 1500, 'PXEClient:Arch:00007:UNDI:003016', 7, '10.1.10.200')",
            [],
        )
        .unwrap();
    }
    if v >= 3 {
        conn.execute(
            "UPDATE nodes SET token = ?1, instance_id = 'i-cmp1-1', attempts = 2 WHERE name = 'cmp1'",
            [TOKEN],
        )
        .unwrap();
    }
    if v >= 4 {
        conn.execute(
            "UPDATE discovered SET zone = 'management' WHERE mac = '52:54:00:00:00:99'",
            [],
        )
        .unwrap();
    }
    if v >= 5 {
        conn.execute(
            "INSERT INTO inventory (node, taken_at, hardware) VALUES ('ctl1', 500, ?1)",
            [serde_json::to_string(&Hardware::default()).unwrap()],
        )
        .unwrap();
    }
    if v >= 6 {
        conn.execute("UPDATE nodes SET disk_at = 2500 WHERE name = 'cmp1'", [])
            .unwrap();
    }
    if v >= 7 {
        conn.execute(
            "UPDATE nodes SET started_at = 2100, cycles = 1 WHERE name = 'cmp1'",
            [],
        )
        .unwrap();
    }
    if v >= 8 {
        conn.execute(
            "INSERT INTO inspections (node, taken_at, inspection) VALUES ('cmp1', 2200, ?1)",
            params![serde_json::to_string(&Inspection::default()).unwrap()],
        )
        .unwrap();
    }
    assert!(v < SCHEMA_VERSION, "a past version");
}

const TOKEN: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn opens_intact(version: u32) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    written_by(version, &path);
    let mut store = Store::open_file(&path)
        .unwrap_or_else(|e| panic!("a store of schema {version} does not open: {e}"));
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);

    let states: Vec<(String, NodeState)> = store
        .nodes()
        .unwrap()
        .into_iter()
        .map(|n| (n.name, n.state))
        .collect();
    assert_eq!(
        states,
        [
            ("cmp1".to_string(), NodeState::Provisioning),
            ("ctl1".to_string(), NodeState::Installed),
            ("stor1".to_string(), NodeState::Failed),
        ],
        "schema {version}: nodes"
    );
    let events = store.events(None, 100).unwrap();
    assert_eq!(events.len(), 4, "schema {version}: events");
    assert_eq!(events[2].detail, "installing -> installed");
    assert_eq!(store.events(Some("ctl1"), 100).unwrap().len(), 2);
    let leases = store.leases().unwrap();
    assert_eq!(leases.len(), 2, "schema {version}: leases");
    assert_eq!(leases[0].ip, Ipv4Addr::new(10, 1, 10, 11));
    assert_eq!(leases[0].node.as_deref(), Some("ctl1"));
    assert_eq!(leases[0].expires_at, 9_000_000_000_000);

    let discovered = store.discovered().unwrap();
    assert_eq!(
        discovered.len(),
        usize::from(version >= 2),
        "schema {version}"
    );
    if version >= 2 {
        assert_eq!(discovered[0].arch, Some(7));
        assert_eq!(
            discovered[0].zone.as_deref(),
            (version >= 4).then_some("management")
        );
    }
    let cmp1 = store.provisioning("cmp1").unwrap();
    if version >= 3 {
        let cmp1 = cmp1.expect("cmp1's provisioning");
        assert_eq!((cmp1.token.as_str(), cmp1.attempts), (TOKEN, 2));
        assert_eq!(store.by_token(TOKEN).unwrap().unwrap().node, "cmp1");
    } else {
        assert!(cmp1.is_none());
    }
    assert_eq!(store.inventory("ctl1").unwrap().is_some(), version >= 5);
    assert_eq!(
        store.node("cmp1").unwrap().unwrap().disk_at,
        (version >= 6).then_some(2500)
    );
    assert_eq!(store.inspection("cmp1").unwrap().is_some(), version >= 8);

    // And the upgraded store works: a transition and a lease commit on old rows.
    assert!(matches!(
        store
            .transition("stor1", NodeState::Provisioning, "test", "forced", true)
            .unwrap(),
        Transition::Changed {
            from: NodeState::Failed
        }
    ));
    store
        .commit_lease(&Lease {
            mac: "52:54:00:00:00:01".parse().unwrap(),
            ip: Ipv4Addr::new(10, 1, 10, 11),
            node: Some("ctl1".into()),
            expires_at: 9_000_000_000_001,
        })
        .unwrap();
    drop(store);
    // Reopening does not migrate again.
    let store = Store::open_file(&path).unwrap();
    assert_eq!(store.leases().unwrap()[0].expires_at, 9_000_000_000_001);
}

macro_rules! from_version {
    ($($name:ident: $v:expr,)*) => {$(
        #[test]
        fn $name() {
            opens_intact($v);
        }
    )*};
}

from_version! {
    a_store_of_schema_1_opens_intact: 1,
    a_store_of_schema_2_opens_intact: 2,
    a_store_of_schema_3_opens_intact: 3,
    a_store_of_schema_4_opens_intact: 4,
    a_store_of_schema_5_opens_intact: 5,
    a_store_of_schema_6_opens_intact: 6,
    a_store_of_schema_7_opens_intact: 7,
    a_store_of_schema_8_opens_intact: 8,
}

/// Every past version has its test above: adding migration 10 makes 9 a past version, and this
/// fails until `a_store_of_schema_9_opens_intact` is added.
#[test]
fn every_past_schema_has_a_test() {
    let source = include_str!("upgrade_tests.rs");
    for v in 1..SCHEMA_VERSION {
        assert!(
            source.contains(&format!("a_store_of_schema_{v}_opens_intact: {v},")),
            "no upgrade test from schema {v}"
        );
    }
}

/// Released migrations are append-only: a store in the field was migrated by the text it had,
/// and an edit here would leave it different from a new one. The SHA-256 of each, as released.
#[test]
fn released_migrations_never_change() {
    const RELEASED: &[&str] = &[
        "0028aaf795a15aa8a0127fae875e03b8a13db2007baa913610ac160c436fcf98", // 1
        "66f612416be4c56402a23ee4222cebde53fb22a5f01de8c750e191d45d6d7254", // 2
        "77ba2db8e82a3c58e3caf59f8cacb73dd89118d33cfd7b7341ad4c97fd4cbafa", // 3
        "e010307a69f2923586802a3eef1bdd113490a842170be1ccecf0692c0dcd4cff", // 4
        "29170e873c554c7fabea97907b4538e2be6d3dfd9551c5451055866c65072d08", // 5
        "658cf374c12006fe1e95a907cc0fb289b3003b7f3c74b7ddd5a506600367c41d", // 6
        "4bc2f5a5002a6030ac7042d92b1eea5c7b31ea578a13838c978c28073e41d505", // 7
        "3d356886bb1a7aef69b28e6d5b4d5bf80f0af01f85ac5ce770da78f7d6c99e27", // 8
        "5261a4af8c35eb2eff65fb76bacd7b34b1c5c17caefc292ced006839eff271ac", // 9
    ];
    let hashes: Vec<String> = MIGRATIONS
        .iter()
        .map(|sql| {
            Sha256::digest(sql.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
        .collect();
    for (i, released) in RELEASED.iter().enumerate() {
        assert_eq!(
            &hashes[i],
            released,
            "migration {} was edited after its release; add a new one instead",
            i + 1
        );
    }
    assert!(
        RELEASED.len() == MIGRATIONS.len(),
        "pin the new migration's SHA-256 here: {:?}",
        &hashes[RELEASED.len()..]
    );
}

/// A package upgrade backs up the store with the new binary while the old server still runs:
/// the backup must leave the store at its schema (and the copy is that schema too), and a
/// restore of it brings it up to date.
#[test]
fn a_backup_leaves_an_older_store_as_it_is_and_its_restore_upgrades_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    written_by(4, &state.join(DB_FILE));
    let store = Store::open_existing_unmigrated(&state).unwrap().unwrap();
    let copy = dir.path().join("copy.db");
    let summary = store.backup(&copy).unwrap();
    assert_eq!(
        (summary.schema_version, summary.nodes, summary.leases),
        (4, 3, 2)
    );
    assert_eq!(
        store.schema_version().unwrap(),
        4,
        "the store was migrated by its backup"
    );
    drop(store);
    let restored = dir.path().join("restored");
    let summary = restore(&restored, &copy).unwrap();
    assert_eq!(summary.schema_version, 4, "what the backup held");
    let store = Store::open_existing(&restored).unwrap().unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.leases().unwrap().len(), 2);
}
