//! `install:`: what the autoinstall documents carry (users, keys, packages, apt source).

use super::*;

pub(super) fn install(
    v: &mut Validator,
    item: &Spanned<wire::InstallWire>,
    seed: &SeedHost,
) -> Install {
    let (w, line) = (&item.value, line_of(item));
    let user = &w.user;
    let posix = user
        .name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && user.name.len() <= 32
        && user
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !posix {
        v.problem(
            line,
            "install.user.name",
            format!("`{}` is not a valid login name (a-z, 0-9, `_`, `-`; starting with a letter or `_`)", user.name),
        );
    }
    if RESERVED_USERNAMES.contains(&user.name.as_str()) {
        v.problem(
            line,
            "install.user.name",
            format!(
                "`{}` is a system account or group Ubuntu reserves (subiquity refuses it); OSISM's operator is `dragon`",
                user.name
            ),
        );
    }
    for (key, id) in [("uid", user.uid), ("gid", user.gid)] {
        if let Some(id) = id
            && !(1000..=59999).contains(&id)
        {
            v.problem(
                line,
                format!("install.user.{key}"),
                format!("{id} is outside 1000-59999, the range Debian and Ubuntu leave to local accounts"),
            );
        }
    }
    if user.gid.is_some() && user.uid.is_none() {
        v.problem(line, "install.user.gid", "a gid needs a uid too");
    }
    if user.ssh_authorized_keys.is_empty() && user.password_hash.is_none() {
        v.problem(
            line,
            "install.user",
            "give ssh_authorized_keys (or a password_hash): otherwise nobody can log in to an installed node",
        );
    }
    for key in &user.ssh_authorized_keys {
        let kind = key.split_whitespace().next().unwrap_or_default();
        if !(kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-")) {
            v.problem(
                line,
                "install.user.ssh_authorized_keys",
                format!(
                    "`{}` does not start with an SSH key type (ssh-ed25519, ssh-rsa, ecdsa-…)",
                    key.chars().take(24).collect::<String>()
                ),
            );
        }
    }
    if let Some(hash) = &user.password_hash
        && !hash.starts_with('$')
    {
        v.problem(
            line,
            "install.user.password_hash",
            "not a crypt(3) hash (it starts with `$`, e.g. from `mkpasswd -m sha-512`); never a plain password",
        );
    }
    let apt_mirror = w
        .apt_mirror
        .clone()
        .map(|u| u.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("{}/apt/ubuntu", seed.url));
    check_url(v, line, "install.apt_mirror", &apt_mirror);
    let lvm = !matches!(w.storage_layout, Some(wire::LayoutWire::Direct));
    let sizing_policy = w.sizing_policy.map(|p| match p {
        wire::SizingWire::Scaled => "scaled",
        wire::SizingWire::All => "all",
    });
    let root_bytes = w.root_size.as_deref().and_then(|size| {
        let bytes = lvm_size(size);
        if bytes.is_none() {
            v.problem(
                line,
                "install.root_size",
                format!("`{size}` is not a size like `200G` (a whole number and M, G or T; LVM's binary units)"),
            );
        }
        bytes
    });
    if !lvm {
        for (key, set) in [
            ("sizing_policy", sizing_policy.is_some()),
            ("root_size", root_bytes.is_some()),
        ] {
            if set {
                v.problem(
                    line,
                    format!("install.{key}"),
                    "sizes the LVM layout's root volume; `storage_layout: direct` has none",
                );
            }
        }
    }
    if let Some(bytes) = root_bytes
        && bytes < 10 << 30
    {
        v.problem(
            line,
            "install.root_size",
            "a root under 10G does not hold Ubuntu and its updates",
        );
    }
    Install {
        user: OperatorUser {
            name: user.name.clone(),
            ssh_authorized_keys: user.ssh_authorized_keys.clone(),
            password_hash: user.password_hash.clone(),
            uid: user.uid,
            gid: user.gid.or(user.uid),
        },
        timezone: w.timezone.clone().unwrap_or_else(|| "Etc/UTC".into()),
        locale: w.locale.clone().unwrap_or_else(|| "en_US.UTF-8".into()),
        keyboard: w.keyboard.clone().unwrap_or_else(|| "us".into()),
        storage_layout: if lvm { "lvm" } else { "direct" },
        sizing_policy,
        root_bytes,
        packages: w.packages.clone(),
        templates_dir: w.templates_dir.clone(),
        apt_mirror,
    }
}

/// Names subiquity refuses for the installed system's user: its `reserved-usernames` file
/// (base-passwd's static users and groups, the names base-passwd's README reserves, Ubuntu's
/// `admin`, and system users of common packages).
pub(super) const RESERVED_USERNAMES: &[&str] = &[
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "gnats",
    "nobody",
    "adm",
    "tty",
    "disk",
    "kmem",
    "dialout",
    "fax",
    "voice",
    "cdrom",
    "floppy",
    "tape",
    "sudo",
    "audio",
    "dip",
    "operator",
    "src",
    "shadow",
    "utmp",
    "video",
    "sasl",
    "plugdev",
    "staff",
    "users",
    "nogroup",
    "netplan",
    "ftn",
    "mysql",
    "tac-plus",
    "alias",
    "qmail",
    "qmaild",
    "qmails",
    "qmailr",
    "qmailq",
    "qmaill",
    "qmailp",
    "asterisk",
    "vpopmail",
    "vchkpw",
    "slurm",
    "hacluster",
    "haclient",
    "grsec-tpe",
    "grsec-sock-all",
    "grsec-sock-clt",
    "grsec-sock-srv",
    "grsec-proc",
    "ceph",
    "opensrf",
    "libvirt-qemu",
    "admin",
    "Debian-exim",
    "bind",
    "crontab",
    "cupsys",
    "dcc",
    "dhcp",
    "dictd",
    "dnsmasq",
    "dovecot",
    "fetchmail",
    "firebird",
    "ftp",
    "fuse",
    "gdm",
    "haldaemon",
    "hplilp",
    "identd",
    "input",
    "jwhois",
    "klog",
    "kvm",
    "lpadmin",
    "maas",
    "messagebus",
    "mythtv",
    "netdev",
    "powerdev",
    "radvd",
    "render",
    "saned",
    "sbuild",
    "scanner",
    "sgx",
    "slocate",
    "ssh",
    "sshd",
    "ssl-cert",
    "sslwrap",
    "statd",
    "syslog",
    "telnetd",
    "tftpd",
];

#[cfg(test)]
mod tests {
    use super::super::testing::refused;

    #[test]
    fn the_operator_account_is_one_subiquity_takes() {
        refused(
            "    name: dragon ",
            "    name: Dragon ",
            "install.user.name",
            "is not a valid login name",
        );
        refused(
            "    name: dragon ",
            "    name: daemon ",
            "install.user.name",
            "",
        );
        refused(
            "    uid: 45000 ",
            "    uid: 500 ",
            "install.user.uid",
            "outside 1000-59999",
        );
    }

    #[test]
    fn the_apt_source_is_a_url_and_seeds_own_prefix_exists() {
        refused(
            "  packages: [python3]",
            "  packages: [python3]\n  apt_mirror: http://10.1.10.5/apt/debian",
            "install.apt_mirror",
            "mirror.repos has no prefix `debian`",
        );
    }
}
