use super::*;
use crate::net::MacAddr;

fn lifecycle() -> Lifecycle {
    Lifecycle {
        dhcp_timeout_secs: 600,
        boot_timeout_secs: 120,
        installer_timeout_secs: 900,
        install_attempts: 3,
        ..Lifecycle::default()
    }
}

const S: i64 = 1000;

fn watched(cycles: u32, dhcp_at: Option<i64>, served_at: Option<i64>) -> Watched {
    Watched {
        name: "cmp1".into(),
        started_at: 1_000 * S,
        cycles,
        dhcp_at,
        served_at,
    }
}

#[test]
fn each_phase_has_its_own_bound_counted_from_the_one_before() {
    let l = lifecycle();
    let start = 1_000 * S;
    // Nothing yet: within 600 s fine, then "never asked DHCP".
    let w = watched(0, None, None);
    assert_eq!(missed(&w, &l, start + 599 * S), None);
    assert_eq!(missed(&w, &l, start + 600 * S), Some((Missed::Dhcp, 600)));
    // A lease from before this start does not count.
    let w = watched(0, Some(start - 5 * S), None);
    assert_eq!(missed(&w, &l, start + 600 * S), Some((Missed::Dhcp, 600)));
    // DHCP at +500 s: the script is due 120 s after that, not after the start.
    let w = watched(0, Some(start + 500 * S), None);
    assert_eq!(missed(&w, &l, start + 610 * S), None);
    assert_eq!(missed(&w, &l, start + 620 * S), Some((Missed::Script, 120)));
    // Served at +550 s: the installer has 900 s from there.
    let w = watched(0, Some(start + 500 * S), Some(start + 550 * S));
    assert_eq!(missed(&w, &l, start + 1449 * S), None);
    assert_eq!(
        missed(&w, &l, start + 1450 * S),
        Some((Missed::Report, 900))
    );
    // A bound of 0 is not watched.
    let off = Lifecycle {
        dhcp_timeout_secs: 0,
        ..l
    };
    assert_eq!(
        missed(&watched(0, None, None), &off, start + 100_000 * S),
        None
    );
}

#[test]
fn a_missed_phase_starts_the_node_again_until_its_attempts_are_used() {
    let l = lifecycle();
    let late = 1_000 * S + 601 * S;
    assert_eq!(
        decide(&watched(0, None, None), &l, late).map(|d| d.0),
        Some(Action::Again { n: 2, of: 3 })
    );
    assert_eq!(
        decide(&watched(1, None, None), &l, late).map(|d| d.0),
        Some(Action::Again { n: 3, of: 3 })
    );
    assert_eq!(
        decide(&watched(2, None, None), &l, late).map(|d| d.0),
        Some(Action::Fail)
    );
}

#[test]
fn an_unknown_mac_asking_right_after_a_start_is_named() {
    let seen = |mac: &str, first: i64, last: i64| Discovered {
        mac: mac.parse::<MacAddr>().unwrap(),
        first_seen: first,
        last_seen: last,
        vendor_class: Some("PXEClient".into()),
        arch: Some(0),
        address: None,
        zone: None,
        relay: None,
        inspected_at: None,
    };
    let start = 1_000 * S;
    let old = seen("52:54:00:00:00:01", 10 * S, 20 * S);
    let wrong = seen("52:54:00:00:00:99", start + 3 * S, start + 40 * S);
    assert_eq!(strangers_since(std::slice::from_ref(&old), start), "");
    let text = strangers_since(&[old, wrong], start);
    assert_eq!(
        text,
        "; unknown MAC 52:54:00:00:00:99 3 s after its start asked DHCP (a wrong MAC in the config?)"
    );
    // A flood of made-up MACs: five named, the rest counted.
    let flood: Vec<Discovered> = (0..10_000)
        .map(|i| {
            seen(
                &format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256),
                start + S,
                start + S,
            )
        })
        .collect();
    let text = strangers_since(&flood, start);
    assert!(text.starts_with("; 10000 unknown MACs asked DHCP after its start, among them 02:00:00:00:00:00 1 s after, "), "{text}");
    assert!(text.len() < 300, "{text}");
}

/// A controller for the disk boot: its power state, whether the BMC refuses the override,
/// and what it was asked.
struct DiskBootFake {
    state: crate::power::PowerState,
    refuses: bool,
    calls: std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>,
}

impl crate::power::Power for DiskBootFake {
    fn status(&self) -> Result<crate::power::PowerState, crate::power::PowerError> {
        Ok(self.state)
    }
    fn on(&self) -> Result<crate::power::Outcome, crate::power::PowerError> {
        self.calls.lock().unwrap().push("on");
        Ok(crate::power::Outcome::Done)
    }
    fn off(&self) -> Result<crate::power::Outcome, crate::power::PowerError> {
        unreachable!("the disk boot never switches a node off")
    }
    fn shutdown(&self) -> Result<crate::power::Outcome, crate::power::PowerError> {
        unreachable!("the disk boot never shuts a node down")
    }
    fn cycle(&self) -> Result<(), crate::power::PowerError> {
        unreachable!("the disk boot never resets a node")
    }
    fn disk_boot_once(&self) -> Result<(), crate::power::PowerError> {
        self.calls.lock().unwrap().push("disk boot once");
        if self.refuses {
            // iDRAC's answer to a target it does not allow.
            return Err(crate::power::PowerError::Failed {
                node: "cmp1".into(),
                action: "boot override",
                why: "400: PropertyValueNotInList".into(),
            });
        }
        Ok(())
    }
}

/// After its agent said installed (and powers off), a node is booted from its disk once it is
/// off; a BMC that refuses the override still gets it powered on (seed then answers the
/// network boot with its local disk); one that stays on is left after the wait, said once.
#[test]
fn an_installed_node_that_powered_off_is_booted_from_its_disk_once() {
    use crate::lifecycle::NodeState;
    use crate::power::PowerState;
    use crate::provision::AWAITING_DISK_BOOT;
    let dir = tempfile::tempdir().unwrap();
    let nodes = crate::provision::start::tests::nodes(dir.path());
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let fake = |state, refuses| {
        let calls = std::sync::Arc::clone(&calls);
        move |_: &crate::config::Node| -> Result<Box<dyn crate::power::Power>, crate::power::PowerError> {
            Ok(Box::new(DiskBootFake {
                state,
                refuses,
                calls: std::sync::Arc::clone(&calls),
            }))
        }
    };
    let installed = |name: &str| {
        nodes.provision(name, "test", false).unwrap();
        let mut store = nodes.store();
        for to in [NodeState::Installing, NodeState::Installed] {
            store
                .transition(name, to, "installer", "test", false)
                .unwrap();
        }
        store
            .record_event(Some(name), AWAITING_DISK_BOOT, "seed", "test")
            .unwrap();
    };
    installed("cmp1");
    let now = crate::store::now_ms();
    // Still on (the agent is shutting down): nothing yet.
    assert!(
        boot_disks(&nodes, now, fake(PowerState::On, false))
            .unwrap()
            .is_empty()
    );
    assert!(calls.lock().unwrap().is_empty());
    // Off, and the BMC refuses the override: powered on all the same.
    let done = boot_disks(&nodes, now, fake(PowerState::Off, true)).unwrap();
    assert_eq!(*calls.lock().unwrap(), ["disk boot once", "on"]);
    assert!(
        done[0].contains("refused (boot override: 400: PropertyValueNotInList); powered on"),
        "{done:?}"
    );
    // Once: the event ended the wait.
    assert!(
        boot_disks(&nodes, now, fake(PowerState::Off, false))
            .unwrap()
            .is_empty()
    );
    assert_eq!(calls.lock().unwrap().len(), 2);

    // A node that never powers off is left after the wait, and said so.
    installed("cmp2");
    calls.lock().unwrap().clear();
    let later = crate::store::now_ms() + POWER_OFF_WAIT_MS;
    let done = boot_disks(&nodes, later, fake(PowerState::On, false)).unwrap();
    assert!(done[0].starts_with("cmp2: still on 600 s"), "{done:?}");
    assert!(calls.lock().unwrap().is_empty());
    assert!(nodes.awaiting_disk_boot().unwrap().is_empty());
}
