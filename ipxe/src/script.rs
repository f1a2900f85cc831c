//! The iPXE scripts seed hands a booting node. Text out; the HTTP side decides which one.

use std::fmt::Write;

/// What an install boot needs.
#[derive(Debug, Clone)]
pub struct Install<'a> {
    /// The node's name (for the messages on its console).
    pub node: &'a str,
    /// Its boot MAC as `52-54-00-…` (the `BOOTIF=01-…` form).
    pub mac_hexhyp: &'a str,
    /// The installer kernel.
    pub kernel_url: &'a str,
    /// The installer initrd. Its last path segment is the image name iPXE gives it.
    pub initrd_url: &'a str,
    /// The live-server ISO casper loads, if the image has one.
    pub iso_url: Option<&'a str>,
    /// The node's NoCloud seed URL (`http://<seed>/nodes/<token>/`), ending in `/`.
    pub datasource_url: &'a str,
    /// Serial console, e.g. `ttyS1,115200n8`.
    pub console: Option<&'a str>,
    /// More installer kernel arguments (from the image).
    pub installer_args: &'a [String],
    /// Kernel arguments for the installed system (curtin copies what follows `---`).
    pub installed_args: &'a [String],
}

/// The image name iPXE gives a download: the last segment of its URL path.
pub fn image_name(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or(path)
}

/// The kernel command line of an install boot.
pub fn install_cmdline(i: &Install<'_>) -> String {
    let mut args: Vec<String> = Vec::new();
    // EFI-stub kernels find their initrd only by this name (BIOS does not care).
    args.push(format!("initrd={}", image_name(i.initrd_url)));
    args.push("ip=dhcp".into());
    args.push(format!("BOOTIF=01-{}", i.mac_hexhyp));
    if let Some(iso) = i.iso_url {
        args.push(format!("url={iso}"));
    }
    args.push("autoinstall".into());
    // Do not let cloud-init in the live system fetch anything else.
    args.push("cloud-config-url=/dev/null".into());
    // iPXE passes `;` through unquoted (measured), and so does the kernel. `nocloud-net` is the
    // spelling every installer's cloud-init takes: `ds=nocloud;s=http…` needs cloud-init 24.1
    // (24.04's installer) and 22.04's ignores it; 24.04's takes `nocloud-net` as an alias.
    args.push(format!("ds=nocloud-net;s={}", i.datasource_url));
    let console: Vec<String> = i
        .console
        .map(|c| vec!["console=tty0".to_string(), format!("console={c}")])
        .unwrap_or_default();
    args.extend(console.iter().cloned());
    args.extend(i.installer_args.iter().cloned());
    args.push("---".into());
    args.extend(console);
    args.extend(i.installed_args.iter().cloned());
    args.join(" ")
}

/// The script that installs the node.
pub fn install(i: &Install<'_>) -> String {
    kernel_boot(
        &format!("install {}", i.node),
        &format!("installing {}", i.node),
        i.kernel_url,
        &install_cmdline(i),
        i.initrd_url,
    )
}

/// What a deploy boot (seed's agent writes a disk image) needs.
#[derive(Debug, Clone)]
pub struct Deploy<'a> {
    /// The node's name.
    pub node: &'a str,
    /// Its boot MAC as `52-54-00-…`: the agent leases its address on that NIC.
    pub mac_hexhyp: &'a str,
    /// The agent's kernel.
    pub kernel_url: &'a str,
    /// The agent's ramdisk.
    pub initrd_url: &'a str,
    /// seed's base URL.
    pub seed_url: &'a str,
    /// The node's token: what opens its deploy plan. `None`: a machine seed does not know,
    /// booted to be inspected and enlisted (`seed.action=enlist`), which has no token.
    pub token: Option<&'a str>,
    /// Serial console, e.g. `ttyS1,115200n8`.
    pub console: Option<&'a str>,
    /// More kernel arguments (the image's, the node's).
    pub args: &'a [String],
}

/// The kernel command line of a deploy boot: what `seed agent` as `/init` reads
/// (`seed.action`, `seed.url`, `seed.token`, `BOOTIF`).
pub fn deploy_cmdline(d: &Deploy<'_>) -> String {
    let mut args: Vec<String> = vec![
        format!("initrd={}", image_name(d.initrd_url)),
        format!("BOOTIF=01-{}", d.mac_hexhyp),
    ];
    match d.token {
        Some(token) => args.extend([
            "seed.action=deploy".into(),
            format!("seed.url={}", d.seed_url),
            format!("seed.token={token}"),
        ]),
        None => args.extend([
            "seed.action=enlist".into(),
            format!("seed.url={}", d.seed_url),
        ]),
    }
    if let Some(c) = d.console {
        args.extend(["console=tty0".to_string(), format!("console={c}")]);
    }
    args.extend(d.args.iter().cloned());
    args.join(" ")
}

/// The script that boots seed's agent to deploy the node's disk image (or, without a token, to
/// enlist an unknown machine).
pub fn deploy(d: &Deploy<'_>) -> String {
    let (comment, say) = match d.token {
        Some(_) => (
            format!("deploy {}", d.node),
            format!("deploying {}", d.node),
        ),
        None => (
            format!("enlist {}", d.node),
            format!("enlisting {}", d.node),
        ),
    };
    kernel_boot(
        &comment,
        &say,
        d.kernel_url,
        &deploy_cmdline(d),
        d.initrd_url,
    )
}

fn kernel_boot(
    comment: &str,
    say: &str,
    kernel_url: &str,
    cmdline: &str,
    initrd_url: &str,
) -> String {
    let mut s = String::from("#!ipxe\n");
    let _ = writeln!(s, "# seed: {comment}");
    let _ = writeln!(s, "echo seed: {say}");
    let _ = writeln!(s, "kernel {kernel_url} {cmdline} || goto failed");
    let _ = writeln!(s, "initrd {initrd_url} || goto failed");
    s.push_str("boot || goto failed\n");
    s.push_str(":failed\n");
    // seed counts the attempts and stops serving the installer when they run out.
    s.push_str("echo seed: the installer did not start; rebooting in 10 s\n");
    s.push_str("sleep 10\n");
    s.push_str("reboot\n");
    s
}

/// The script that replaces a foreign iPXE (a NIC's ROM) with seed's own build: that one asks
/// DHCP again and fetches the node's script itself.
pub fn chain(node: &str, binary_url: &str) -> String {
    format!(
        "#!ipxe\n\
         # seed: {node} installs under seed's own iPXE\n\
         echo seed: {node}: loading seed's iPXE (this one is ${{net0/chip}})\n\
         chain --autofree {binary_url} || goto failed\n\
         :failed\n\
         echo seed: {binary_url} did not load; rebooting in 10 s\n\
         sleep 10\n\
         reboot\n"
    )
}

/// The script that boots whatever is on the local disk: `exit` hands UEFI back to its boot
/// order, `sanboot` boots the first BIOS drive. `why` is shown on the console.
pub fn local_disk(why: &str) -> String {
    // `$` would start an iPXE setting expansion in the message.
    let why: String = why.chars().filter(|c| *c != '$' && *c != '\n').collect();
    format!(
        "#!ipxe\n\
         # seed: {why}\n\
         echo seed: {why}; booting from the local disk\n\
         iseq ${{platform}} efi && exit 0 ||\n\
         sanboot --no-describe --drive 0x80 || exit 0\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example<'a>(console: Option<&'a str>, extra: &'a [String]) -> Install<'a> {
        Install {
            node: "cmp3",
            mac_hexhyp: "3c-ec-ef-10-00-23",
            kernel_url: "http://10.1.10.5/images/noble/vmlinuz",
            initrd_url: "http://10.1.10.5/images/noble/initrd",
            iso_url: Some("http://10.1.10.5/images/noble/ubuntu-24.04-live-server-amd64.iso"),
            datasource_url: "http://10.1.10.5/nodes/TOKEN/",
            console,
            installer_args: &[],
            installed_args: extra,
        }
    }

    fn golden(name: &str, actual: &str) {
        let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
        if std::env::var_os("SEED_UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, actual).unwrap();
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e} (SEED_UPDATE_GOLDEN=1 regenerates)"));
        assert_eq!(actual, want, "{name} differs from its golden file");
    }

    #[test]
    fn the_install_command_line_is_exact() {
        let extra = vec!["nomodeset".to_string()];
        let script = install(&example(Some("ttyS1,115200n8"), &extra));
        golden("install-console.ipxe", &script);
        assert_eq!(
            install_cmdline(&example(Some("ttyS1,115200n8"), &extra)),
            "initrd=initrd ip=dhcp BOOTIF=01-3c-ec-ef-10-00-23 \
             url=http://10.1.10.5/images/noble/ubuntu-24.04-live-server-amd64.iso autoinstall \
             cloud-config-url=/dev/null ds=nocloud-net;s=http://10.1.10.5/nodes/TOKEN/ \
             console=tty0 console=ttyS1,115200n8 --- console=tty0 console=ttyS1,115200n8 nomodeset"
        );
        golden("install-plain.ipxe", &install(&example(None, &[])));
    }

    #[test]
    fn the_initrd_is_named_after_its_url() {
        assert_eq!(image_name("http://s/images/a/initrd.gz?v=2"), "initrd.gz");
        assert_eq!(image_name("http://s/initrd"), "initrd");
        let mut i = example(None, &[]);
        i.initrd_url = "http://10.1.10.5/images/x/initrd.zst";
        assert!(install_cmdline(&i).starts_with("initrd=initrd.zst "));
    }

    #[test]
    fn local_disk_exits_on_uefi_and_sanboots_on_bios() {
        let script = local_disk("cmp3 is deployed");
        golden("local-disk.ipxe", &script);
        assert!(local_disk("a ${danger}").contains("echo seed: a {danger};"));
    }
}
