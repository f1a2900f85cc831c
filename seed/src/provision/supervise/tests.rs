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
