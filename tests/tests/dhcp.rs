//! The DHCP server against real clients in network namespaces the tests create: busybox
//! udhcpc, ISC dhclient and Kea's perfdhcp.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on purpose

mod common;

use common::describe;
use common::netns::{Netns, SEED_IP, serving, udhcpc, with_seed_settings};

const NODE_MAC: &str = "02:00:00:00:00:21";
// A zero-length option on an otherwise valid packet is tolerated and answered (a unit test in
// seed's dhcp::packet shows it); the packets above are all refused.

/// A discovery pool of ten addresses.
const POOL: &str = ", discovery_pool: { start: 10.99.10.200, end: 10.99.10.209 }";
/// One known node: n1, BMC .21 → 10.99.10.21.
const NODES: &str = "[{ name: n1, role: node, bmc: { address: 10.99.0.21, driver: manual }, macs: [\"02:00:00:00:00:21\"] }]";

fn rack(ns: &Netns, dir: &std::path::Path) -> std::path::PathBuf {
    ns.config(dir, "10.99.10.0/24", POOL, NODES)
}

#[test]
fn udhcpc_gets_the_reserved_address_and_the_boot_file_for_its_firmware() {
    let (ns, dir, _config, seed) = serving(rack);
    ns.set_client_mac(NODE_MAC);

    // x64 UEFI PXE: ipxe.efi over TFTP from seed (siaddr).
    let (out, env) = udhcpc(
        &ns,
        dir.path(),
        &["-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007"],
    );
    assert_eq!(
        env.get("ip").map(String::as_str),
        Some("10.99.10.21"),
        "{}",
        describe(&out)
    );
    assert_eq!(
        env.get("boot_file").map(String::as_str),
        Some("ipxe.efi"),
        "{env:?}"
    );
    assert_eq!(
        env.get("siaddr").map(String::as_str),
        Some(SEED_IP),
        "{env:?}"
    );
    assert_eq!(env.get("subnet").map(String::as_str), Some("255.255.255.0"));
    assert_eq!(env.get("router").map(String::as_str), Some("10.99.10.254"));
    assert_eq!(env.get("serverid").map(String::as_str), Some(SEED_IP));

    // Legacy BIOS: undionly.kpxe.
    let (_, env) = udhcpc(
        &ns,
        dir.path(),
        &["-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x5d:0000"],
    );
    assert_eq!(
        env.get("boot_file").map(String::as_str),
        Some("undionly.kpxe"),
        "{env:?}"
    );

    // iPXE (user class "iPXE"): the script URL, never the binary again.
    let (_, env) = udhcpc(
        &ns,
        dir.path(),
        &[
            "-V",
            "PXEClient:Arch:00007:UNDI:003010",
            "-x",
            "0x5d:0007",
            "-x",
            "0x4d:69505845",
        ],
    );
    assert_eq!(
        env.get("boot_file").map(String::as_str),
        // iPXE fills in the settings: the script learns which iPXE asks (a ROM or seed's own).
        Some(
            "http://10.99.10.1:8080/boot.ipxe?mac=02:00:00:00:00:21\
             &chip=${net0/chip}&platform=${platform}"
        ),
        "{env:?}"
    );
    // iPXE by option 175 alone.
    let (_, env) = udhcpc(&ns, dir.path(), &["-x", "0xaf:b10101"]);
    assert!(
        env.get("boot_file")
            .is_some_and(|f| f.contains("/boot.ipxe?mac=02:00:00:00:00:21&")),
        "{env:?}"
    );

    // UEFI HTTP boot: an http URL of the EFI binary, HTTPClient echoed in option 60.
    let (_, env) = udhcpc(
        &ns,
        dir.path(),
        &[
            "-V",
            "HTTPClient:Arch:00016:UNDI:003001",
            "-x",
            "0x5d:0010",
            "-O",
            "60",
        ],
    );
    assert_eq!(
        env.get("boot_file").map(String::as_str),
        Some("http://10.99.10.1:8080/ipxe/ipxe.efi"),
        "{env:?}"
    );
    assert!(
        env.values()
            .any(|v| v == "HTTPClient" || v == "48545450436c69656e74"),
        "option 60 echo: {env:?}"
    );

    // No PXE class: the installer or installed system gets its address and nothing to boot.
    let (_, env) = udhcpc(&ns, dir.path(), &[]);
    assert_eq!(env.get("ip").map(String::as_str), Some("10.99.10.21"));
    assert!(!env.contains_key("boot_file"), "{env:?}");

    // The URLs handed out work: the EFI binary for HTTP boot, and the script (the local disk:
    // nobody provisioned the node).
    ns.add_client_address("10.99.10.50/24");
    let fetch = |url: &str| {
        let out = ns
            .in_cli("curl")
            .args(["-sS", "--max-time", "10", url])
            .output()
            .unwrap();
        assert!(out.status.success(), "{url}: {}", describe(&out));
        out.stdout
    };
    let efi = fetch("http://10.99.10.1:8080/ipxe/ipxe.efi");
    assert!(
        efi == std::fs::read(common::repo_root().join("ipxe/firmware/ipxe.efi")).unwrap(),
        "ipxe.efi over HTTP differs"
    );
    let script = String::from_utf8(fetch(
        "http://10.99.10.1:8080/boot.ipxe?mac=02:00:00:00:00:21",
    ))
    .unwrap();
    assert!(script.contains("n1 is ready, not provisioning"), "{script}");
    // And /metrics counted the exchanges.
    let metrics = String::from_utf8(fetch("http://10.99.10.1:8080/metrics")).unwrap();
    for (kind, direction) in [
        ("discover", "in"),
        ("offer", "out"),
        ("request", "in"),
        ("ack", "out"),
    ] {
        let prefix =
            format!("seed_dhcp_packets_total{{type=\"{kind}\",direction=\"{direction}\"}} ");
        let count: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{prefix} missing in\n{metrics}"));
        assert!(count >= 6, "{prefix}{count}: six clients went through DORA");
    }
    seed.stop();
}

#[test]
fn firmware_seed_carries_nothing_for_gets_no_answer() {
    let (ns, dir, _config, seed) = serving(rack);
    ns.set_client_mac(NODE_MAC);
    // 32-bit UEFI (arch 6): an x64 binary would not run; no answer at all.
    let (out, env) = udhcpc(
        &ns,
        dir.path(),
        &[
            "-V",
            "PXEClient:Arch:00006:UNDI:003000",
            "-x",
            "0x5d:0006",
            "-t",
            "2",
        ],
    );
    assert!(env.is_empty(), "no lease expected: {env:?}");
    assert!(!out.status.success(), "{}", describe(&out));
    let log = seed.stop();
    assert!(
        log.contains("32-bit x86 UEFI (arch 6) network boot: seed carries no binary for it"),
        "the refusal is logged: {log}"
    );
}

#[test]
fn malformed_packets_do_not_stop_the_server() {
    let (ns, dir, _config, seed) = serving(rack);
    ns.add_client_address("10.99.10.50/24");
    // A valid DHCPDISCOVER header to mangle: BOOTREQUEST, Ethernet, 6-byte MAC, magic cookie.
    let script = format!(
        r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
hdr = bytes([1, 1, 6, 0]) + bytes(4) + bytes(20) + bytes.fromhex("020000000099") + bytes(10) + bytes(192)
cookie = bytes([99, 130, 83, 99])
packets = [
    hdr[:100],                                        # truncated header
    hdr + cookie + bytes([53, 1, 1, 61, 200, 1, 2]),  # option 61 overruns the packet
    hdr + cookie + bytes([53, 0, 255]),               # zero-length message type
    bytes(range(256)) * 5 + bytes(220),               # 1,500 bytes of garbage
    hdr + cookie + bytes([53, 1, 2, 255]),            # an OFFER sent to the server
]
for p in packets:
    s.sendto(p, ("{SEED_IP}", 67))
print(len(packets))
"#
    );
    let out = ns.in_cli("python3").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    // Then a real client is still served.
    ns.set_client_mac(NODE_MAC);
    let (out, env) = udhcpc(&ns, dir.path(), &[]);
    assert_eq!(
        env.get("ip").map(String::as_str),
        Some("10.99.10.21"),
        "{}",
        describe(&out)
    );
    let log = seed.stop();
    assert!(log.contains("malformed DHCP packet dropped"), "{log}");
    assert!(
        log.contains("malformed: 5,"),
        "every bad packet counted: {log}"
    );
}

#[test]
fn dhclient_gets_the_same_pool_lease_back_after_seed_restarts() {
    let (ns, dir, config, seed) = serving(rack);
    let state = dir.path().join("state");

    // Two unknown machines take the first two discovery addresses.
    ns.set_client_mac("02:00:00:00:00:a1");
    let (_, env) = udhcpc(&ns, dir.path(), &[]);
    assert_eq!(
        env.get("ip").map(String::as_str),
        Some("10.99.10.200"),
        "{env:?}"
    );
    ns.set_client_mac("02:00:00:00:00:b2");
    let lease_file = dir.path().join("dhclient.leases");
    let (log, env) = common::netns::dhclient(&ns, dir.path(), &lease_file);
    assert_eq!(
        env.get("new_ip_address").map(String::as_str),
        Some("10.99.10.201"),
        "{log}\n{env:?}"
    );

    seed.stop();
    let seed = ns.start_seed(&config, &state);
    // dhclient keeps its lease file and asks for its address again (INIT-REBOOT). A seed that
    // forgot its leases would NAK it and hand out .200, the first free pool address.
    let (log, env) = common::netns::dhclient(&ns, dir.path(), &lease_file);
    assert_eq!(
        env.get("reason").map(String::as_str),
        Some("REBOOT"),
        "{log}\n{env:?}"
    );
    assert_eq!(
        env.get("new_ip_address").map(String::as_str),
        Some("10.99.10.201"),
        "{log}\n{env:?}"
    );
    assert!(!log.contains("DHCPNAK"), "{log}");
    // And a fresh DISCOVER from it (no lease file) finds the same address.
    let (log, env) = common::netns::dhclient(&ns, dir.path(), &dir.path().join("fresh.leases"));
    assert_eq!(
        env.get("new_ip_address").map(String::as_str),
        Some("10.99.10.201"),
        "{log}\n{env:?}"
    );
    seed.stop();
}

/// A /16 zone with a pool of 4,096 addresses, for load.
fn big_rack(ns: &Netns, dir: &std::path::Path) -> std::path::PathBuf {
    ns.config(
        dir,
        "10.99.0.0/16",
        ", discovery_pool: { start: 10.99.100.0, end: 10.99.115.255 }",
        NODES,
    )
}

/// perfdhcp's summary lines.
fn perfdhcp(ns: &Netns, args: &[&str]) -> (std::process::Output, String) {
    common::need("perfdhcp");
    let out = ns
        .in_cli("timeout")
        .args(["60", "perfdhcp", "-4", "-l", &ns.cli_if])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

/// The number after `label:` in perfdhcp's "Statistics for: DISCOVER-OFFER" (first) or
/// "REQUEST-ACK" (second) block.
fn stat(text: &str, exchange: &str, label: &str) -> u64 {
    let block = text
        .split("***Statistics for: ")
        .find(|b| b.starts_with(exchange))
        .unwrap_or_else(|| panic!("no {exchange} in {text}"));
    block
        .lines()
        .find_map(|l| {
            l.trim().strip_prefix(label).map(|v| {
                v.trim_start_matches(':')
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {label} for {exchange} in {text}"))
}

#[test]
fn perfdhcp_completes_dora_through_a_relay() {
    let (ns, _dir, _config, seed) = serving(big_rack);
    // perfdhcp acts as a relay: it sends from port 67 with giaddr = its own address and
    // expects the answers unicast to giaddr:67.
    ns.add_client_address("10.99.10.50/16");
    let (out, text) = perfdhcp(
        &ns,
        &[
            "-r",
            "100",
            "-n",
            "300",
            "-R",
            "300",
            "-W",
            "2000000",
            "10.99.10.1",
        ],
    );
    let log = seed.stop();
    assert!(out.status.success(), "{}\n{log}", common::describe(&out));
    assert_eq!(stat(&text, "DISCOVER-OFFER", "sent packets"), 300, "{text}");
    assert_eq!(
        stat(&text, "DISCOVER-OFFER", "received packets"),
        300,
        "{text}"
    );
    assert_eq!(
        stat(&text, "REQUEST-ACK", "received packets"),
        300,
        "{text}"
    );
}

/// tcpdump of DHCP traffic in the client namespace, stopped on drop.
struct Capture(std::process::Child, std::path::PathBuf);

impl Capture {
    fn start(ns: &Netns, file: &std::path::Path) -> Self {
        let log = file.with_extension("log");
        let child = ns
            .in_cli("tcpdump")
            .args(["-i", &ns.cli_if, "-U", "-n", "-s", "1500", "-w"])
            .arg(file)
            .args(["udp", "port", "67"])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("tcpdump");
        common::wait_until(
            std::time::Duration::from_secs(10),
            "tcpdump did not start",
            || {
                std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains("listening on")
            },
        );
        Self(child, file.to_path_buf())
    }

    fn stop(mut self) -> Vec<(String, std::net::Ipv4Addr)> {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
        common::pcap::acks(&self.1)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sigkill_during_load_loses_no_acked_lease_and_hands_out_no_address_twice() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let config = big_rack(&ns, dir.path());
    let state = dir.path().join("state");
    ns.add_client_address("10.99.10.50/16");
    let seed = ns.start_seed(&config, &state);

    // Load from 1,500 clients (a fixed random seed, so the second run reuses the MACs); kill
    // seed with SIGKILL once ACKs are flowing.
    let capture = Capture::start(&ns, &dir.path().join("before.pcap"));
    common::need("perfdhcp");
    let load = common::KillOnDrop::new(
        ns.in_cli("timeout")
            .args([
                "30",
                "perfdhcp",
                "-4",
                "-l",
                &ns.cli_if,
                "-r",
                "300",
                "-p",
                "4",
                "-R",
                "1500",
                "-s",
                "7",
                "10.99.10.1",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::wait_until(
        std::time::Duration::from_secs(20),
        "no DHCP traffic",
        || {
            std::fs::metadata(dir.path().join("before.pcap"))
                .map(|m| m.len())
                .unwrap_or(0)
                >= 300_000
        },
    );
    seed.kill();
    load.wait_with_output();
    let before = capture.stop();
    assert!(
        before.len() > 100,
        "only {} ACKs before the kill",
        before.len()
    );

    // Every ACKed address is in the store, leased to the MAC it was ACKed to.
    let acked = common::pcap::last_ack_by_mac(&before);
    {
        let store = seed::store::Store::open(&state).unwrap();
        let stored: std::collections::BTreeMap<String, std::net::Ipv4Addr> = store
            .leases()
            .unwrap()
            .into_iter()
            .map(|l| (l.mac.to_string(), l.ip))
            .collect();
        let lost: Vec<_> = acked
            .iter()
            .filter(|(mac, ip)| stored.get(*mac) != Some(ip))
            .collect();
        assert!(
            lost.is_empty(),
            "{} of {} ACKed leases lost, e.g. {:?}",
            lost.len(),
            acked.len(),
            &lost[..lost.len().min(5)]
        );
    }

    // After a restart, the same clients again: nobody gets an address that was ACKed to
    // another MAC.
    let seed = ns.start_seed(&config, &state);
    let capture = Capture::start(&ns, &dir.path().join("after.pcap"));
    let (out, _) = perfdhcp(
        &ns,
        &[
            "-r",
            "300",
            "-n",
            "600",
            "-R",
            "1500",
            "-s",
            "7",
            "-W",
            "2000000",
            "10.99.10.1",
        ],
    );
    let after = capture.stop();
    seed.stop();
    assert!(
        after.len() >= 500,
        "{} ACKs after the restart: {}",
        after.len(),
        common::describe(&out)
    );
    let owner: std::collections::BTreeMap<std::net::Ipv4Addr, &String> =
        acked.iter().map(|(mac, ip)| (*ip, mac)).collect();
    let mut same_mac_again = 0;
    for (mac, ip) in &after {
        if let Some(first) = owner.get(ip) {
            assert_eq!(
                *first, mac,
                "{ip} was ACKed to {first} before the crash and to {mac} after it"
            );
        }
        if acked.get(mac) == Some(ip) {
            same_mac_again += 1;
        }
    }
    assert!(
        same_mac_again > 0,
        "the second run reused no client of the first"
    );
}

/// Python that sends one DHCP packet per argument (`dest_port:hex`, or `dest_port:hex:wait_s`)
/// from port 68 to seed and prints each reply as hex, or `none` when nothing came in time
/// (3 s by default).
const PY_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.bind(("0.0.0.0", 68))
for arg in sys.argv[1:]:
    parts = arg.split(":")
    s.settimeout(float(parts[2]) if len(parts) > 2 else 3)
    s.sendto(bytes.fromhex(parts[1]), ("10.99.10.1", int(parts[0])))
    try:
        data, _ = s.recvfrom(4096)
        print(data.hex())
    except socket.timeout:
        print("none")
"#;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A client packet: `kind` 1 DISCOVER / 3 REQUEST, from `mac`, with raw options appended.
fn client_packet(kind: u8, mac: [u8; 6], ciaddr: [u8; 4], opts: &[u8]) -> String {
    let mut p = vec![1, 1, 6, 0, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0];
    p.extend(ciaddr);
    p.extend([0; 12]);
    p.extend(mac);
    p.extend([0; 10 + 192]);
    p.extend([99, 130, 83, 99, 53, 1, kind]);
    p.extend(opts);
    p.push(255);
    p.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn proxy_dhcp_offers_boot_information_and_no_address() {
    use dhcproto::v4::{DhcpOption, MessageType, OptionCode};
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let config = ns.config(dir.path(), "10.99.10.0/24", "", NODES);
    with_seed_settings(&config, "dhcp: { proxy: true }");
    let seed = ns.start_seed(&config, &dir.path().join("state"));
    // The site's DHCP server gave the client an address already.
    ns.add_client_address("10.99.10.60/24");
    let node = [2, 0, 0, 0, 0, 0x21];
    let pxe: Vec<u8> = [
        &[60, 32][..],
        b"PXEClient:Arch:00007:UNDI:003016",
        &[93, 2, 0, 7, 97, 17, 0],
        &[0xab; 16],
    ]
    .concat();
    let args = [
        format!("67:{}", client_packet(1, node, [0; 4], &pxe)),
        format!("4011:{}", client_packet(3, node, [10, 99, 10, 60], &pxe)),
        // Not a PXE client (its OS asking for an address): the site's server answers it.
        format!("67:{}", client_packet(1, node, [0; 4], &[])),
        // A PXE client seed does not know.
        format!(
            "67:{}",
            client_packet(1, [2, 0, 0, 0, 0, 0x99], [0; 4], &pxe)
        ),
    ];
    let out = ns
        .in_cli("python3")
        .arg("-c")
        .arg(PY_CLIENT)
        .args(&args)
        .output()
        .unwrap();
    let log = seed.stop();
    assert!(out.status.success(), "{}\n{log}", describe(&out));
    let replies: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(replies.len(), 4, "{replies:?}");
    assert_eq!(
        replies[2], "none",
        "non-PXE DISCOVER answered in proxy mode"
    );
    assert_eq!(replies[3], "none", "unknown MAC answered in proxy mode");
    for (reply, kind) in [
        (&replies[0], MessageType::Offer),
        (&replies[1], MessageType::Ack),
    ] {
        assert_ne!(reply, "none", "no {kind:?}: {log}");
        let bytes: Vec<u8> = (0..reply.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&reply[i..i + 2], 16).unwrap())
            .collect();
        let msg = seed::dhcp::parse(&bytes).unwrap();
        let opts = msg.opts();
        assert_eq!(opts.msg_type(), Some(kind));
        assert_eq!(
            msg.yiaddr(),
            std::net::Ipv4Addr::UNSPECIFIED,
            "a proxy offers no address"
        );
        assert!(
            opts.get(OptionCode::AddressLeaseTime).is_none(),
            "no lease either"
        );
        assert_eq!(msg.siaddr(), std::net::Ipv4Addr::new(10, 99, 10, 1));
        assert_eq!(
            msg.fname_str().unwrap().unwrap().trim_end_matches('\0'),
            "ipxe.efi"
        );
        assert_eq!(
            opts.get(OptionCode::ClassIdentifier),
            Some(&DhcpOption::ClassIdentifier(b"PXEClient".to_vec()))
        );
        assert_eq!(
            opts.get(OptionCode::VendorExtensions),
            Some(&DhcpOption::VendorExtensions(vec![6, 1, 8, 255]))
        );
        assert!(
            matches!(opts.get(OptionCode::ClientMachineIdentifier), Some(DhcpOption::ClientMachineIdentifier(g)) if g.len() == 17),
            "GUID echoed"
        );
    }
}

#[test]
fn router_advertisements_without_a_prefix_answer_rdisc6() {
    let (ns, _dir, _config, seed) = serving(rack);
    // rdisc6 (ndisc6) solicits and prints the advertisement. Right after the link comes up the
    // link-local addresses are still tentative, so it may take a few tries.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let text = loop {
        let out = ns
            .in_cli("rdisc6")
            .args(["-1", "-w", "1000", &ns.cli_if])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("Router lifetime") {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no router advertisement: {}",
            describe(&out)
        );
    };
    seed.stop();
    assert!(text.contains("Hop limit"), "{text}");
    let field = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    assert!(
        field("Router lifetime").starts_with("0 (0x00000000)"),
        "not a default router: {text}"
    );
    assert_eq!(field("Stateful address conf."), "No", "{text}");
    assert!(
        !text.contains("Prefix"),
        "no prefix to autoconfigure: {text}"
    );
}

#[test]
fn renew_rebind_inform_nak_release_and_decline_follow_rfc_2131() {
    use dhcproto::v4::{MessageType, OptionCode};
    use std::net::Ipv4Addr;
    let (ns, dir, _config, seed) = serving(rack);
    let state = dir.path().join("state");
    // The node holds its reserved address already (as after a first DORA).
    ns.add_client_address("10.99.10.21/24");
    let node = [2, 0, 0, 0, 0, 0x21];
    let stranger = [2, 0, 0, 0, 0, 0x77];
    let other = [2, 0, 0, 0, 0, 0x78];
    let opt50 = |ip: [u8; 4]| [&[50u8, 4][..], &ip].concat();
    let server_id = [54, 4, 10, 99, 10, 1];
    let args = [
        // 0: RENEWING: ciaddr set, no option 50/54 → ACK, unicast to ciaddr.
        format!("67:{}", client_packet(3, node, [10, 99, 10, 21], &[])),
        // 1: INFORM → ACK with the zone's options, no address, no lease time.
        format!("67:{}", client_packet(8, node, [10, 99, 10, 21], &[])),
        // 2: INIT-REBOOT asking for an address that is not the node's → NAK.
        format!(
            "67:{}",
            client_packet(3, node, [0; 4], &opt50([10, 99, 10, 99]))
        ),
        // 3: a stranger takes a pool address: DISCOVER …
        format!("67:{}", client_packet(1, stranger, [0; 4], &[])),
    ];
    let out = ns
        .in_cli("python3")
        .arg("-c")
        .arg(PY_CLIENT)
        .args(&args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let replies: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let msg = |i: usize| {
        seed::dhcp::parse(&unhex(&replies[i]))
            .unwrap_or_else(|e| panic!("reply {i}: {e} {replies:?}"))
    };

    let renew = msg(0);
    assert_eq!(renew.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(renew.yiaddr(), Ipv4Addr::new(10, 99, 10, 21));
    let inform = msg(1);
    assert_eq!(inform.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(inform.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(inform.opts().get(OptionCode::AddressLeaseTime).is_none());
    assert!(inform.opts().get(OptionCode::SubnetMask).is_some());
    assert_eq!(msg(2).opts().msg_type(), Some(MessageType::Nak));
    let offer = msg(3);
    assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
    let pool_ip = offer.yiaddr();
    let ip = pool_ip.octets();

    // … requests it, then releases it; another client declines the next one.
    let args = [
        format!(
            "67:{}",
            client_packet(
                3,
                stranger,
                [0; 4],
                &[opt50(ip), server_id.to_vec()].concat()
            )
        ),
        format!("67:{}:0.3", client_packet(7, stranger, ip, &server_id)),
        format!("67:{}", client_packet(1, other, [0; 4], &[])),
    ];
    let out = ns
        .in_cli("python3")
        .arg("-c")
        .arg(PY_CLIENT)
        .args(&args)
        .output()
        .unwrap();
    let replies: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let msg = |i: usize| {
        seed::dhcp::parse(&unhex(&replies[i]))
            .unwrap_or_else(|e| panic!("reply {i}: {e} {replies:?}"))
    };
    assert_eq!(msg(0).opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(msg(0).yiaddr(), pool_ip);
    assert_eq!(replies[1], "none", "RELEASE has no answer");
    let declined = msg(2).yiaddr();
    let args = [
        // RFC 2131 4.3.3: a client declines the address it was ACKed (after its ARP probe).
        format!(
            "67:{}",
            client_packet(
                3,
                other,
                [0; 4],
                &[opt50(declined.octets()), server_id.to_vec()].concat()
            )
        ),
        format!(
            "67:{}:0.3",
            client_packet(
                4,
                other,
                [0; 4],
                &[opt50(declined.octets()), server_id.to_vec()].concat()
            )
        ),
        // Asking for the declined address again: a free address asked for would be given.
        format!(
            "67:{}",
            client_packet(1, other, [0; 4], &opt50(declined.octets()))
        ),
    ];
    let out = ns
        .in_cli("python3")
        .arg("-c")
        .arg(PY_CLIENT)
        .args(&args)
        .output()
        .unwrap();
    let replies: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        seed::dhcp::parse(&unhex(&replies[0]))
            .unwrap()
            .opts()
            .msg_type(),
        Some(MessageType::Ack)
    );
    assert_eq!(replies[1], "none", "DECLINE has no answer");
    let after_decline = seed::dhcp::parse(&unhex(&replies[2])).unwrap().yiaddr();
    assert_ne!(
        after_decline, declined,
        "a declined address is not offered again"
    );
    seed.stop();

    // The release reached the store: the stranger holds no lease any more.
    let store = seed::store::Store::open(&state).unwrap();
    let leases = store.leases().unwrap();
    assert!(
        !leases.iter().any(|l| l.ip == pool_ip),
        "released lease still stored: {leases:?}"
    );
    assert!(
        leases.iter().any(|l| l.ip == Ipv4Addr::new(10, 99, 10, 21)),
        "the renewal was stored"
    );
}

#[test]
fn a_flood_from_one_mac_does_not_starve_other_clients() {
    let (ns, dir, _config, seed) = serving(rack);
    ns.add_client_address("10.99.10.50/24");
    // DISCOVERs from one MAC as fast as Python sends them: bounded to 3 s and 300,000 packets.
    let flood = format!(
        r#"
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
hdr = bytes([1, 1, 6, 0]) + bytes(24) + bytes.fromhex("0200000000ff") + bytes(202)
pkt = hdr + bytes([99, 130, 83, 99, 53, 1, 1, 255])
end, n = time.time() + 3, 0
while time.time() < end and n < 300000:
    s.sendto(pkt, ("{SEED_IP}", 67))
    n += 1
print(n)
"#
    );
    let flooder = common::KillOnDrop::new(
        ns.in_cli("python3")
            .arg("-c")
            .arg(flood)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Meanwhile the node boots.
    ns.set_client_mac_keep_address(NODE_MAC);
    let (out, env) = udhcpc(
        &ns,
        dir.path(),
        &["-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007"],
    );
    let sent: u64 = String::from_utf8_lossy(&flooder.wait_with_output().stdout)
        .trim()
        .parse()
        .unwrap();
    let log = seed.stop();
    assert_eq!(
        env.get("ip").map(String::as_str),
        Some("10.99.10.21"),
        "{}\n{log}",
        describe(&out)
    );
    assert!(sent > 1000, "the flood was only {sent} packets");
    let stat = |name: &str| -> u64 {
        log.split(&format!("{name}: "))
            .nth(1)
            .and_then(|s| s.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {log}"))
    };
    // The kernel drops what overflows the socket buffer; of what seed read, all but the
    // allowance (50 a second) and the node's own packets were throttled, not answered.
    let (received, limited) = (stat("received"), stat("rate_limited"));
    assert!(received > 1000, "{log}");
    assert!(
        limited + 50 * 5 + 10 >= received,
        "{limited} of {received} received packets rate-limited"
    );
}

/// A config edit reaches a running `seed serve` on SIGHUP: a MAC fixed in the config is
/// answered with the node's address at once and leaves the discovered list; an edit that does
/// not check is refused with its error, and the running config keeps serving.
#[test]
fn sighup_reloads_a_fixed_mac_and_refuses_a_broken_config() {
    const REAL: &str = "02:00:00:00:00:99";
    let (ns, dir, config, seed) = serving(rack);
    ns.set_client_mac(REAL);
    // The config names another MAC for n1: its machine is a stranger (a pool address).
    let (out, env) = udhcpc(&ns, dir.path(), &[]);
    assert_eq!(
        env.get("ip").map(String::as_str),
        Some("10.99.10.200"),
        "{}",
        common::describe(&out)
    );
    let discovered = |state: &std::path::Path| -> Vec<String> {
        seed::store::Store::open(state)
            .unwrap()
            .discovered()
            .unwrap()
            .iter()
            .map(|d| d.mac.to_string())
            .collect()
    };
    let state = dir.path().join("state");
    common::wait_until(std::time::Duration::from_secs(20), "not discovered", || {
        discovered(&state).contains(&REAL.to_string())
    });

    // The operator fixes the MAC and tells seed.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace(NODE_MAC, REAL)).unwrap();
    seed.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, env) = udhcpc(&ns, dir.path(), &[]);
        if env.get("ip").map(String::as_str) == Some("10.99.10.21") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the fixed MAC is not n1's 20 s after SIGHUP:\n{}",
            seed.log()
        );
    }
    assert!(
        !discovered(&state).contains(&REAL.to_string()),
        "adopted: no longer discovered"
    );
    assert!(seed.log().contains("config reloaded"), "{}", seed.log());

    // A broken edit: refused with its error, the running config keeps serving.
    let fixed = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        fixed.replace("roles: [node]", "roles: [node], colour: blue"),
    )
    .unwrap();
    seed.signal("HUP");
    common::wait_until_else(
        std::time::Duration::from_secs(20),
        || seed.log().contains("config reload refused"),
        || seed.log(),
    );
    assert!(
        seed.log().contains("unknown field `colour`"),
        "{}",
        seed.log()
    );
    let (_, env) = udhcpc(&ns, dir.path(), &[]);
    assert_eq!(env.get("ip").map(String::as_str), Some("10.99.10.21"));
    let log = seed.stop();
    assert!(!log.contains("panicked"), "{log}");
}

/// Runs [`PY_CLIENT`] in the client namespace with `args`; its replies (hex or `none`).
fn exchange(ns: &Netns, args: &[String]) -> Vec<String> {
    let out = ns
        .in_cli("python3")
        .arg("-c")
        .arg(PY_CLIENT)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// DHCPDECLINE is believed only from the MAC that holds the lease (anyone can send one naming
/// any address; before, one took a pool address from the client holding it), one MAC keeps at
/// most two addresses out of the pool (before, declining every address it was given emptied a
/// pool), and a flood of refused DECLINEs writes a few log lines, not one per packet.
#[test]
fn a_decline_counts_only_from_the_lease_holder_and_cannot_empty_the_pool() {
    use dhcproto::v4::MessageType;
    let (ns, _dir, _config, seed) = serving(rack);
    // The packets go to seed's address (as a relay's would): the client side needs a route.
    ns.add_client_address("10.99.10.60/24");
    let server_id = [54u8, 4, 10, 99, 10, 1];
    let opt50 = |ip: std::net::Ipv4Addr| [&[50u8, 4][..], &ip.octets()].concat();
    let parse = |hex: &str| seed::dhcp::parse(&unhex(hex)).unwrap();
    // DISCOVER and REQUEST: the address `mac` is ACKed.
    let dora = |mac: [u8; 6]| {
        let offer =
            parse(&exchange(&ns, &[format!("67:{}", client_packet(1, mac, [0; 4], &[]))])[0]);
        let ip = offer.yiaddr();
        let ack = exchange(
            &ns,
            &[format!(
                "67:{}",
                client_packet(3, mac, [0; 4], &[opt50(ip), server_id.to_vec()].concat())
            )],
        );
        assert_eq!(parse(&ack[0]).opts().msg_type(), Some(MessageType::Ack));
        ip
    };
    let decline = |mac: [u8; 6], ip: std::net::Ipv4Addr| {
        format!(
            "67:{}:0.2",
            client_packet(4, mac, [0; 4], &[opt50(ip), server_id.to_vec()].concat())
        )
    };

    let victim = [2, 0, 0, 0, 0, 0x31];
    let attacker = [2, 0, 0, 0, 0, 0x32];
    let held = dora(victim);
    // The victim configures it (a renewal's ACK is sent there).
    ns.add_client_address(&format!("{held}/24"));
    // The victim renews (RFC 2131 4.3.2 RENEWING: ciaddr, no option 50).
    let renewal = || {
        let reply = exchange(
            &ns,
            &[format!(
                "67:{}",
                client_packet(3, victim, held.octets(), &[])
            )],
        );
        parse(&reply[0])
    };
    // The attacker declines the victim's address with its own MAC.
    assert_eq!(exchange(&ns, &[decline(attacker, held)]), ["none"]);
    // The victim renews and keeps it.
    let renew = renewal();
    assert_eq!(
        renew.opts().msg_type(),
        Some(MessageType::Ack),
        "the victim lost {held}"
    );
    assert_eq!(renew.yiaddr(), held);

    // The attacker declines every address it is given, 12 times over a pool of ten.
    for _ in 0..12 {
        let ip = dora(attacker);
        assert_eq!(exchange(&ns, &[decline(attacker, ip)]), ["none"]);
    }
    // A new machine still gets an address.
    let newcomer = exchange(
        &ns,
        &[format!(
            "67:{}",
            client_packet(1, [2, 0, 0, 0, 0, 0x33], [0; 4], &[])
        )],
    );
    assert_ne!(
        newcomer[0], "none",
        "the pool was emptied by one MAC's declines"
    );

    // 2,000 DECLINEs naming the victim's address from random MACs: a few log lines.
    let flood = format!(
        r#"
import os, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(2000):
    mac = bytes([2]) + os.urandom(5)
    p = bytes([1, 1, 6, 0]) + bytes(24) + mac + bytes(202) + bytes([99, 130, 83, 99, 53, 1, 4, 50, 4]) + bytes([{}]) + bytes([255])
    s.sendto(p, ("{SEED_IP}", 67))
"#,
        held.octets().map(|b| b.to_string()).join(", ")
    );
    let out = ns.in_cli("python3").arg("-c").arg(&flood).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    // Seed has read them all when a client asking after them is answered.
    let renew = renewal();
    assert_eq!(
        renew.yiaddr(),
        held,
        "the victim lost its address to the flood"
    );
    let log = seed.stop();
    let lines = log
        .lines()
        .filter(|l| l.contains("DECLINE ignored"))
        .count();
    // Five lines per 10 s (the budget), however slow the machine: far from the 2,000+ DECLINEs
    // ignored, one line each before.
    assert!(
        (1..50).contains(&lines),
        "{lines} lines about ignored DECLINEs:\n{log}"
    );
}

/// seed's agent in the deploy ramdisk has no dhclient: its own client (`seed agent dhcp`, the
/// code `/init` runs on BOOTIF) leases from seed over the kernel's UDP socket on a NIC with no
/// address yet, puts the lease on the NIC by rtnetlink, and can then reach seed over it.
#[test]
fn the_agent_leases_its_node_address_and_reaches_seed_over_it() {
    let (ns, dir, _config, seed) = serving(rack);
    ns.set_client_mac(NODE_MAC);
    let agent = |wait: &str| {
        ns.in_cli("timeout")
            .arg("60")
            .arg(common::seed_bin())
            .args(["agent", "dhcp", "--interface", &ns.cli_if, "--wait", wait])
            .output()
            .unwrap()
    };
    let out = agent("20");
    assert!(out.status.success(), "{}\n{}", describe(&out), seed.log());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("10.99.10.21/24 from 10.99.10.1, router 10.99.10.254"),
        "{said}"
    );
    let show = |what: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(["-n", &ns.cli])
            .args(what)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let addresses = show(&["-4", "addr", "show", "dev", &ns.cli_if]);
    assert!(
        addresses.contains("inet 10.99.10.21/24 brd 10.99.10.255"),
        "{addresses}"
    );
    let routes = show(&["-4", "route", "show", "default"]);
    assert!(
        routes.contains("default via 10.99.10.254") && routes.contains("proto dhcp"),
        "{routes}"
    );
    // The address works: seed's HTTP answers the agent's side.
    let out = ns
        .in_cli("curl")
        .args([
            "-fsS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://{SEED_IP}:8080/metrics"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "{}",
        describe(&out)
    );

    // A machine seed does not know gets a discovery address (what enlistment inspects with).
    ns.set_client_mac("02:00:00:00:00:99");
    let out = agent("20");
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("10.99.10.20"),
        "{}",
        describe(&out)
    );

    // No server: a bounded wait, then an error naming the NIC and what was missing.
    drop(seed);
    let out = agent("3");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!("DHCP on {}: no OFFER within 3 s", ns.cli_if)),
        "{said}"
    );
    drop(dir);
}
