//! Install disks: the operator's words for a disk → subiquity's `storage.layout.match`, and a
//! matcher that chooses the way subiquity does, so a rule can be checked against the disks a
//! machine really has.
//!
//! subiquity (`FilesystemModel._make_matchers`, `disk_for_match`) keeps the disks for which
//! every key matches, `fnmatchcase` against udev's properties: `serial` against `ID_SERIAL`,
//! `model` against `ID_MODEL`, `vendor` against `ID_VENDOR`, `id_path` against `ID_PATH`,
//! `path` against the kernel's `/dev` name; `ssd` compares `queue/rotational`; `size:
//! smallest|largest` sorts what is left, and the first disk wins. udev does not spell those
//! properties the way a BMC, a datasheet or `lsblk` shows a disk:
//!
//! - ATA and SCSI models have every run of whitespace as one `_` (`DELLBOSS VD` is
//!   `DELLBOSS_VD`, `PERC H740P Mini` is `PERC_H740P_Mini`); NVMe models keep their spaces.
//! - `ID_SERIAL` is never the serial on the label: `<model>_<serial>` on ATA
//!   (`DELLBOSS_VD_aa06e20941c90010`), `<model>_<serial>_<namespace>` on NVMe with systemd ≥
//!   254 (`ADATA_SX8200PNP_2L082LSBB1EF_1`), `<vendor>_<model>_<serial>-0:0` on USB, the bare
//!   serial on virtio, and on SAS disks and RAID volumes the NAA WWN behind a `3`
//!   (`35000c50093fddc5f`), while the label's serial is only in `ID_SCSI_SERIAL`, which
//!   subiquity does not read.
//!
//! So a literal model or vendor becomes a pattern with `[ _]` for each space, a literal serial
//! `*<serial>*`, and a WWN (`wwn:`, for SAS disks and RAID volumes) the serial pattern
//! `*<wwn>`. A value with `*`, `?` or `[` is the operator's own glob, passed on as it is.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::config::model::DiskMatch;

/// subiquity's `storage.layout.match` for `rule` (see the module doc).
pub fn subiquity_match(rule: &DiskMatch) -> BTreeMap<String, Value> {
    let mut m = BTreeMap::new();
    let mut put = |key: &str, value: Value| {
        m.insert(key.to_string(), value);
    };
    if let Some(serial) = &rule.serial {
        put("serial", Value::from(serial_pattern(serial)));
    } else if let Some(wwn) = &rule.wwn {
        // SAS and SCSI RAID volumes: ID_SERIAL is "3" + the NAA WWN, in lower case.
        let hex = wwn_hex(wwn).unwrap_or_else(|| wwn.clone());
        put("serial", Value::from(format!("*{hex}")));
    }
    if let Some(model) = &rule.model {
        put("model", Value::from(words_pattern(model)));
    }
    if let Some(vendor) = &rule.vendor {
        put("vendor", Value::from(words_pattern(vendor)));
    }
    if let Some(id_path) = &rule.id_path {
        let id_path = id_path.strip_prefix(BY_PATH).unwrap_or(id_path);
        put("id_path", Value::from(literal_or_glob(id_path)));
    }
    if let Some(path) = &rule.path {
        put("path", Value::from(path.clone()));
    }
    if let Some(size) = rule.size {
        put("size", Value::from(size));
    }
    if let Some(ssd) = rule.ssd {
        put("ssd", Value::from(ssd));
    }
    m
}

/// Where udev's by-path links live: an operator may copy the link's whole path.
const BY_PATH: &str = "/dev/disk/by-path/";

/// Whether an operator's value is a glob of their own.
pub fn is_glob(value: &str) -> bool {
    value.contains(['*', '?', '['])
}

/// The hex digits of a WWN as udev writes them (lower case, no `0x`, `naa.` or `wwn-`), if
/// `value` is one: 16 or 32 hex digits.
pub fn wwn_hex(value: &str) -> Option<String> {
    let v = value.trim();
    let v = v.strip_prefix("wwn-").unwrap_or(v);
    let v = v
        .strip_prefix("0x")
        .or_else(|| v.strip_prefix("0X"))
        .or_else(|| v.strip_prefix("naa."))
        .or_else(|| v.strip_prefix("NAA."))
        .unwrap_or(v);
    let ok = matches!(v.len(), 16 | 32) && v.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| v.to_ascii_lowercase())
}

fn serial_pattern(serial: &str) -> String {
    if is_glob(serial) {
        return serial.to_string();
    }
    // ID_SERIAL carries the serial between a model prefix and, on NVMe, a namespace suffix.
    format!("*{}*", escape(serial.trim()))
}

fn literal_or_glob(value: &str) -> String {
    if is_glob(value) {
        value.to_string()
    } else {
        escape(value)
    }
}

/// A model or vendor as written → a pattern that matches udev's ATA/SCSI spelling (`_`) and
/// NVMe's (space) alike. udev trims the ends and makes each run of whitespace one `_`.
fn words_pattern(value: &str) -> String {
    if is_glob(value) {
        return value.to_string();
    }
    value
        .split_whitespace()
        .map(escape)
        .collect::<Vec<_>>()
        .join("[ _]")
}

/// `value` as a pattern that matches exactly it: fnmatch's special characters in brackets.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' | '?' | '[' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

/// Python's `fnmatch.fnmatchcase`: `*` any run, `?` any one character, `[seq]` / `[!seq]` a
/// set with ranges; a `[` without its `]` is itself. Whole-string, case-sensitive.
pub fn fnmatchcase(name: &str, pattern: &str) -> bool {
    let name: Vec<char> = name.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    matches_from(&name, &pattern)
}

fn matches_from(name: &[char], pattern: &[char]) -> bool {
    // Iterative with one backtrack point for the last `*`, as glob matchers do.
    let (mut n, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() {
            match pattern[p] {
                '*' => {
                    star = Some((p, n));
                    p += 1;
                    continue;
                }
                '?' => {
                    n += 1;
                    p += 1;
                    continue;
                }
                '[' => {
                    if let Some((hit, next)) = class(&pattern[p..], name[n]) {
                        if hit {
                            n += 1;
                            p += next;
                            continue;
                        }
                    } else if name[n] == '[' {
                        n += 1;
                        p += 1;
                        continue;
                    }
                }
                c if c == name[n] => {
                    n += 1;
                    p += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// A `[...]` set at the start of `pattern` applied to `c`: whether it matches and the set's
/// length, or `None` when the `[` is not closed (then it is a literal `[`).
fn class(pattern: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pattern.get(i), Some('!'));
    if negate {
        i += 1;
    }
    // A `]` first in the set is a member, not its end.
    let start = i;
    let mut hit = false;
    loop {
        let &ch = pattern.get(i)?;
        if ch == ']' && i > start {
            return Some((hit != negate, i + 1));
        }
        if pattern.get(i + 1) == Some(&'-') && pattern.get(i + 2).is_some_and(|&e| e != ']') {
            let end = pattern[i + 2];
            if ch <= c && c <= end {
                hit = true;
            }
            i += 3;
        } else {
            if ch == c {
                hit = true;
            }
            i += 1;
        }
    }
}

/// One disk as udev describes it to subiquity (its probe data).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UdevDisk {
    /// The kernel's name, `/dev/sda`.
    pub path: String,
    /// `ID_SERIAL`.
    pub id_serial: String,
    /// `ID_MODEL`.
    pub id_model: String,
    /// `ID_VENDOR` (empty where udev sets none, e.g. NVMe).
    pub id_vendor: String,
    /// `ID_PATH`.
    pub id_path: String,
    /// Bytes.
    pub size: u64,
    /// `queue/rotational` is 1.
    pub rotational: bool,
}

/// The disks subiquity would consider for `m`, in its order: the first is the one it installs
/// to. (Every key must match; `size` then sorts; disks of size 0 never count.)
pub fn candidates<'d>(m: &BTreeMap<String, Value>, disks: &'d [UdevDisk]) -> Vec<&'d UdevDisk> {
    let text = |key: &str| m.get(key).and_then(Value::as_str);
    let mut found: Vec<&UdevDisk> = disks
        .iter()
        .filter(|d| d.size != 0)
        .filter(|d| text("serial").is_none_or(|p| fnmatchcase(&d.id_serial, p)))
        .filter(|d| text("model").is_none_or(|p| fnmatchcase(&d.id_model, p)))
        .filter(|d| text("vendor").is_none_or(|p| fnmatchcase(&d.id_vendor, p)))
        .filter(|d| text("path").is_none_or(|p| fnmatchcase(&d.path, p)))
        .filter(|d| text("id_path").is_none_or(|p| fnmatchcase(&d.id_path, p)))
        .filter(|d| {
            m.get("ssd")
                .and_then(Value::as_bool)
                .is_none_or(|ssd| ssd != d.rotational)
        })
        .collect();
    match text("size") {
        Some("smallest") => found.sort_by_key(|d| d.size),
        Some("largest") => found.sort_by_key(|d| std::cmp::Reverse(d.size)),
        _ => {}
    }
    found
}

/// A drive or volume as a BMC reports it (Redfish `Drive`, `Volume`): the label's serial, the
/// model with its spaces, the WWNs, not udev's names.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReportedDisk {
    /// The BMC's name for it (`Disk.Bay.0`, `Solid State Disk 0:1:0`).
    pub name: String,
    /// `Model`.
    pub model: String,
    /// `Manufacturer`.
    pub vendor: String,
    /// `SerialNumber`.
    pub serial: String,
    /// Durable names that are WWNs, as [`wwn_hex`] writes them.
    pub wwns: Vec<String>,
    /// Bytes.
    pub size: Option<u64>,
    /// Solid state (`MediaType` SSD); `None` where the BMC does not say.
    pub ssd: Option<bool>,
}

impl std::fmt::Display for ReportedDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name)?;
        let mut parts = Vec::new();
        if !self.model.is_empty() {
            parts.push(self.model.clone());
        }
        if !self.serial.is_empty() {
            parts.push(format!("serial {}", self.serial));
        }
        if let Some(size) = self.size {
            parts.push(format!("{} GB", size / 1_000_000_000));
        }
        if !parts.is_empty() {
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

/// What a rule selects among the disks a BMC reports.
#[derive(Debug, PartialEq)]
pub enum Selection<'d> {
    /// Exactly this one (after the size sort, when the rule has one).
    One(&'d ReportedDisk),
    /// Several, and nothing in the rule orders them: subiquity takes whichever it lists first.
    Several(Vec<&'d ReportedDisk>),
    /// None.
    Nothing,
    /// The rule names the disk by something a BMC does not report (a kernel or by-path name).
    Unknown(&'static str),
}

/// The disks of `disks` that `rule` selects, read the way subiquity would read the same disks
/// under udev (the patterns of [`subiquity_match`] match a BMC's spelling too: `[ _]`, a serial
/// anywhere in the string). A device whose media type is unknown is not ruled out by `ssd`.
pub fn select_reported<'d>(rule: &DiskMatch, disks: &'d [ReportedDisk]) -> Selection<'d> {
    if rule.path.is_some() || rule.id_path.is_some() {
        return Selection::Unknown(
            "the rule names a kernel or by-path name, which BMCs do not report",
        );
    }
    let m = subiquity_match(rule);
    let text = |key: &str| m.get(key).and_then(Value::as_str);
    let wwn = rule.wwn.as_deref().and_then(wwn_hex);
    let mut found: Vec<&ReportedDisk> = disks
        .iter()
        .filter(|d| match (&wwn, text("serial")) {
            (Some(wwn), _) => d
                .wwns
                .iter()
                .any(|w| w.ends_with(wwn.as_str()) || wwn.ends_with(w.as_str())),
            (None, Some(p)) => fnmatchcase(&d.serial, p),
            (None, None) => true,
        })
        // The BMC's spelling (spaces) or udev's (`_`), for a rule written either way.
        .filter(|d| text("model").is_none_or(|p| either_spelling(&d.model, p)))
        .filter(|d| text("vendor").is_none_or(|p| either_spelling(&d.vendor, p)))
        .filter(|d| rule.ssd.is_none_or(|ssd| d.ssd.is_none_or(|s| s == ssd)))
        .collect();
    match rule.size {
        Some("smallest") => found.sort_by_key(|d| d.size.unwrap_or(u64::MAX)),
        Some("largest") => found.sort_by_key(|d| std::cmp::Reverse(d.size.unwrap_or(0))),
        _ => {}
    }
    match found.len() {
        0 => Selection::Nothing,
        1 => Selection::One(found[0]),
        _ if rule.size.is_some() => Selection::One(found[0]),
        _ => Selection::Several(found),
    }
}

fn either_spelling(name: &str, pattern: &str) -> bool {
    fnmatchcase(name, pattern)
        || fnmatchcase(
            &name.split_whitespace().collect::<Vec<_>>().join("_"),
            pattern,
        )
}

#[cfg(test)]
pub(crate) mod tests;
