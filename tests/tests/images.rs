//! `seed images import` against ISOs that xorriso builds with Ubuntu's live-server layout
//! (`casper/`, `.disk/info`), with Rock Ridge, Joliet only, and plain ISO 9660 names; what
//! seed serves afterwards is compared byte for byte with what went in. Checksums, signed
//! SHA256SUMS (a throwaway gpg key), truncated ISOs and an import killed halfway.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on purpose

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::http::{HttpSeed, curl};
use common::{KillOnDrop, describe, repo_root, seed};

const INFO: &str = "Ubuntu-Server 24.04.1 LTS \"Noble Numbat\" - Release amd64 (20240827)";

/// A live-server-shaped tree: random kernel and initrd (and the HWE pair, whose names ISO
/// 9660 level 1 cannot hold), `.disk/info`, some other files.
fn tree(dir: &Path, big: u64) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("casper")).unwrap();
    std::fs::create_dir_all(src.join(".disk")).unwrap();
    std::fs::create_dir_all(src.join("boot/grub")).unwrap();
    for (name, size) in [
        ("casper/vmlinuz", 3_000_001),
        ("casper/initrd", 5_000_000),
        ("casper/hwe-vmlinuz", 1_234_567),
        ("casper/hwe-initrd", 2_000_000),
    ] {
        let bytes: Vec<u8> = (0..size)
            .map(|i: u64| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ name.len() as u8)
            .collect();
        std::fs::write(src.join(name), bytes).unwrap();
    }
    std::fs::write(src.join(".disk/info"), format!("{INFO}\n")).unwrap();
    std::fs::write(src.join("boot/grub/grub.cfg"), "menuentry x {}\n").unwrap();
    if big > 0 {
        // The squashfs a real ISO carries: what makes the copy take a while.
        let f = std::fs::File::create(src.join("casper/filesystem.squashfs")).unwrap();
        f.set_len(big).unwrap();
    }
    src
}

/// `xorriso -as mkisofs` with `flags` over `src`.
fn iso(src: &Path, out: &Path, flags: &[&str]) {
    let result = Command::new(common::need("xorriso"))
        .args(["-as", "mkisofs", "-V", "Ubuntu-Server 24.04.1 LTS amd64"])
        .args(flags)
        .arg("-o")
        .arg(out)
        .arg(src)
        .output()
        .expect("xorriso (apt-get install xorriso)");
    assert!(result.status.success(), "xorriso: {}", describe(&result));
}

fn images(state: &Path, args: &[&str]) -> Output {
    seed()
        .arg("--state-dir")
        .arg(state)
        .arg("images")
        .args(args)
        .output()
        .unwrap()
}

/// A config (the lab example) for serving the images directory.
fn config(dir: &Path) -> PathBuf {
    let path = dir.join("seed.yaml");
    std::fs::copy(repo_root().join("examples/lab.yaml"), &path).unwrap();
    path
}

#[test]
fn an_imported_iso_is_served_byte_identical_whatever_its_names() {
    let dir = tempfile::tempdir().unwrap();
    let src = tree(dir.path(), 0);
    for (flavour, flags, hwe) in [
        ("rockridge", &["-R", "-J"][..], true),
        // xorriso writes Rock Ridge unless told not to.
        ("joliet", &["-J", "--norock"][..], true),
        // Level 1 names: HWE_VMLI.;1 and the like; kernel and initrd are still found.
        ("plain", &["--norock"][..], false),
    ] {
        let image = dir.path().join(format!("{flavour}.iso"));
        iso(&src, &image, flags);
        let state = dir.path().join(format!("state-{flavour}"));
        let out = images(&state, &["import", image.to_str().unwrap()]);
        assert!(out.status.success(), "{flavour}: {}", describe(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("image ubuntu-24.04 imported") && stdout.contains(INFO),
            "{flavour}: the name comes from .disk/info: {stdout}"
        );
        let stored = state.join("images/ubuntu-24.04");
        for (inside, name) in [
            ("casper/vmlinuz", "vmlinuz"),
            ("casper/initrd", "initrd"),
            ("casper/hwe-vmlinuz", "hwe-vmlinuz"),
            ("casper/hwe-initrd", "hwe-initrd"),
        ] {
            if name.starts_with("hwe") && !hwe {
                assert!(!stored.join(name).exists(), "{flavour}: {name}");
                continue;
            }
            assert_eq!(
                std::fs::read(stored.join(name)).unwrap(),
                std::fs::read(src.join(inside)).unwrap(),
                "{flavour}: {name}"
            );
        }
        assert_eq!(
            std::fs::read(stored.join(format!("{flavour}.iso"))).unwrap(),
            std::fs::read(&image).unwrap()
        );
        let list = images(&state, &["list"]);
        let text = String::from_utf8_lossy(&list.stdout);
        let row = text
            .lines()
            .find(|l| l.starts_with("ubuntu-24.04"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(row.contains("24.04.1") && row.contains("amd64"), "{row}");
        assert!(text.contains("images: "), "disk use is shown: {text}");
    }

    // What seed serves is what went in (the Rock Ridge import).
    let state = dir.path().join("state-rockridge");
    let http = HttpSeed::start(&config(dir.path()), &state);
    for (inside, name) in [("casper/vmlinuz", "vmlinuz"), ("casper/initrd", "initrd")] {
        let reply = curl(&[&http.url(&format!("/images/ubuntu-24.04/{name}"))]);
        assert_eq!(reply.status, 200, "{name}");
        assert!(
            reply.body == std::fs::read(src.join(inside)).unwrap(),
            "{name} differs"
        );
    }

    // The API lists it, with what it takes on disk.
    let api = curl(&[&http.url("/api/v1/images")]).json();
    assert_eq!(api["images"][0]["name"], "ubuntu-24.04", "{api}");
    assert_eq!(api["images"][0]["release"], "24.04.1", "{api}");
    assert!(
        api["disk"]["images_bytes"].as_u64().unwrap() > 8_000_000,
        "{api}"
    );
    drop(http);

    // Removed: gone from the list and from disk.
    let out = images(&state, &["remove", "ubuntu-24.04"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!state.join("images/ubuntu-24.04").exists());
    let out = images(&state, &["remove", "ubuntu-24.04"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no image named ubuntu-24.04"));
}

/// Nothing but the image directory may appear under images/: no staging left behind.
fn entries(state: &Path) -> Vec<String> {
    match std::fs::read_dir(state.join("images")) {
        Ok(dir) => dir
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn sha256(path: &Path) -> String {
    let out = Command::new(common::need("sha256sum"))
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn checksums_are_enforced_and_bad_isos_register_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = tree(dir.path(), 0);
    let image = dir.path().join("ubuntu-24.04.1-live-server-amd64.iso");
    iso(&src, &image, &["-R", "-J"]);
    let state = dir.path().join("state");
    let path = image.to_str().unwrap();

    // A wrong SHA-256: refused, nothing registered, nothing left.
    let wrong = "0".repeat(64);
    let out = images(&state, &["import", path, "--sha256", &wrong]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not the expected 0000") && stderr.contains("nothing registered"),
        "{stderr}"
    );
    assert_eq!(entries(&state), Vec::<String>::new());

    // A truncated ISO (an interrupted download): a clear error.
    let truncated = dir.path().join("truncated.iso");
    let bytes = std::fs::read(&image).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let out = images(&state, &["import", truncated.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("truncated.iso: truncated: the file has"),
        "{stderr}"
    );
    // Not an ISO at all.
    let out = images(
        &state,
        &["import", src.join(".disk/info").to_str().unwrap()],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not an ISO 9660 image"),
        "{}",
        describe(&out)
    );
    assert_eq!(entries(&state), Vec::<String>::new());

    // A SHA256SUMS signed by a (throwaway) key: verified with gpgv against its keyring.
    let key = common::gpg::Key::new(dir.path(), "seed test <test@invalid>");
    let gpg = |args: &[&str]| key.gpg(args);
    let sums = dir.path().join("SHA256SUMS");
    std::fs::write(
        &sums,
        format!(
            "{} *ubuntu-24.04.1-live-server-arm64.iso\n{} *ubuntu-24.04.1-live-server-amd64.iso\n",
            "1".repeat(64),
            sha256(&image)
        ),
    )
    .unwrap();
    let signature = dir.path().join("SHA256SUMS.gpg");
    gpg(&[
        "--detach-sign",
        "-o",
        signature.to_str().unwrap(),
        sums.to_str().unwrap(),
    ]);
    let keyring = key.keyring.clone();
    let sums_arg = sums.to_str().unwrap();
    let keyring_arg = keyring.to_str().unwrap();
    let import = |extra: &[&str]| {
        let mut args = vec![
            "import",
            path,
            "--sha256sums",
            sums_arg,
            "--keyring",
            keyring_arg,
        ];
        args.extend(extra);
        images(&state, &args)
    };
    let out = import(&[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("the ISO's SHA-256 matches"));

    // The sums file changed after signing: refused before anything is copied.
    std::fs::write(
        &sums,
        format!("{} *ubuntu-24.04.1-live-server-amd64.iso\n", "2".repeat(64)),
    )
    .unwrap();
    let out = import(&["--replace", "--name", "other"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the signature does not verify"),
        "{}",
        describe(&out)
    );
    // Without a keyring the (now wrong) sums are only a checksum, and say so.
    let out = images(
        &state,
        &["import", path, "--sha256sums", sums_arg, "--name", "other"],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not authenticated without --keyring")
            && stderr.contains("not the expected 2222"),
        "{stderr}"
    );
    assert_eq!(entries(&state), vec!["ubuntu-24.04".to_string()]);
}

/// An import killed halfway (power cut, kill -9) leaves no image; the next import clears its
/// staging directory.
#[test]
fn an_import_killed_halfway_leaves_no_image() {
    let dir = tempfile::tempdir().unwrap();
    // 256 MiB of squashfs stand-in: the copy takes long enough to be interrupted.
    let src = tree(dir.path(), 256 << 20);
    let image = dir.path().join("big.iso");
    iso(&src, &image, &["-R"]);
    let state = dir.path().join("state");
    let child = seed()
        .arg("--state-dir")
        .arg(&state)
        .args(["images", "import", image.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut import = KillOnDrop::new(child);
    // Its progress lines say how far it is: kill it a quarter of the way through the ISO.
    let stderr = import.child().stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "no progress from the import");
        let line = lines.next().expect("the import ended early").unwrap();
        if line.contains("hashing and copying big.iso:  25%") {
            break;
        }
    }
    // SIGKILL: no handler runs, like a power cut for the files not yet synced.
    import.child().kill().unwrap();
    let _ = import.child().wait();
    assert!(!state.join("images/ubuntu-24.04").exists());
    let list = images(&state, &["list"]);
    assert!(!String::from_utf8_lossy(&list.stdout).contains("ubuntu-24.04"));
    let left = entries(&state);
    assert!(
        left.len() == 1 && left[0].starts_with(".new-ubuntu-24.04-"),
        "the dead import's staging: {left:?}"
    );
    // The next import (of a small ISO) removes the dead one's staging.
    let small = dir.path().join("small.iso");
    let small_src = tree(&dir.path().join("small"), 0);
    iso(&small_src, &small, &["-R"]);
    let out = images(&state, &["import", small.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(entries(&state), vec!["ubuntu-24.04".to_string()]);
}

/// `qemu-img` with `args`, which must succeed.
fn qemu_img(args: &[&str]) {
    let out = Command::new(common::need("qemu-img"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        describe(&out)
    );
}

/// Disk images as qemu-img writes them (qcow2 v3 and v2 (compat 0.10), small and large
/// clusters, zlib and zstd compressed clusters) become, with `seed images add-disk`, the raw
/// disk they were made from, byte for byte, with sha256sum's SHA-256; a qcow2 with a backing
/// file and a wrong --sha256 register nothing.
#[test]
fn disk_images_from_qemu_img_become_the_raw_disk_they_were_made_from() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // A 24 MiB disk: data in a few places (the first sector, across a 64 KiB cluster
    // boundary, a compressible run, the last bytes), zeros elsewhere.
    let raw = dir.path().join("disk.raw");
    let mut bytes = vec![0u8; 24 << 20];
    for (at, len) in [(0usize, 512usize), (65_000, 1_000), (3 << 20, 2 << 20)] {
        for (i, b) in bytes[at..at + len].iter_mut().enumerate() {
            *b = ((i * 7919) >> 3) as u8 | 1;
        }
    }
    bytes[(10 << 20)..(11 << 20)].fill(0x5a);
    let end = bytes.len();
    bytes[end - 100..].fill(0xee);
    std::fs::write(&raw, &bytes).unwrap();
    let want = sha256(&raw);
    let raw_arg = raw.to_str().unwrap();

    let variants: [(&str, &[&str]); 5] = [
        ("plain.qcow2", &["-O", "qcow2"]),
        ("v2.qcow2", &["-O", "qcow2", "-o", "compat=0.10"]),
        ("big.qcow2", &["-O", "qcow2", "-o", "cluster_size=2M"]),
        ("zlib.qcow2", &["-O", "qcow2", "-c"]),
        (
            "zstd.qcow2",
            &["-O", "qcow2", "-c", "-o", "compression_type=zstd"],
        ),
    ];
    for (name, flags) in variants {
        let image = dir.path().join(name);
        let image_arg = image.to_str().unwrap();
        let mut args = vec!["convert", "-f", "raw"];
        args.extend(flags);
        args.extend([raw_arg, image_arg]);
        qemu_img(&args);
        let out = images(
            &state,
            &["add-disk", "node", "--file", image_arg, "--replace"],
        );
        assert!(out.status.success(), "{name}: {}", describe(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("SHA-256 {want}")), "{name}: {text}");
        let converted = state.join("disks/node/disk.raw");
        assert_eq!(sha256(&converted), want, "{name}");
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(state.join("disks/node/disk.json")).unwrap())
                .unwrap();
        assert_eq!(record["source"]["format"], "qcow2", "{name}");
        assert_eq!(record["source"]["sha256"], sha256(&image), "{name}");
        assert_eq!(record["size"], 24 << 20, "{name}");
    }
    let out = images(&state, &["list"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&want),
        "{}",
        describe(&out)
    );

    // An overlay on a base image: refused, the registered image untouched.
    let base = dir.path().join("base.qcow2");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        raw_arg,
        base.to_str().unwrap(),
    ]);
    let overlay = dir.path().join("overlay.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        base.to_str().unwrap(),
        "-F",
        "qcow2",
        overlay.to_str().unwrap(),
    ]);
    let out = images(
        &state,
        &[
            "add-disk",
            "node",
            "--file",
            overlay.to_str().unwrap(),
            "--replace",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("overlay.qcow2") && err.contains("backing file"),
        "{}",
        describe(&out)
    );
    let out = images(
        &state,
        &[
            "add-disk",
            "other",
            "--file",
            raw_arg,
            "--sha256",
            &"ab".repeat(32),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not the expected"),
        "{}",
        describe(&out)
    );
    assert_eq!(sha256(&state.join("disks/node/disk.raw")), want);
    assert!(!state.join("disks/other").exists());
}
