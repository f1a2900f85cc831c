//! `mirror:`: the APT mirror (repositories, upstreams, cache size).

use super::*;

pub(super) fn mirror(v: &mut Validator, item: &Spanned<wire::MirrorWire>) -> Mirror {
    let (w, line) = (&item.value, line_of(item));
    let mut repos: Vec<MirrorRepo> = Vec::new();
    for r in &w.repos {
        let at = format!("mirror.repos[{}]", r.prefix);
        let plain = !r.prefix.is_empty()
            && !r.prefix.starts_with('.')
            && r.prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !plain {
            v.problem(
                line,
                format!("{at}.prefix"),
                "a prefix is one path segment of a-z, A-Z, 0-9, `-`, `_`, `.` (not starting with `.`)",
            );
        }
        if repos.iter().any(|o| o.prefix == r.prefix) {
            v.problem(line, format!("{at}.prefix"), "given twice");
        }
        if r.static_dir.is_none() && r.upstream.is_empty() {
            v.problem(
                line,
                at.clone(),
                "needs `static` (a mirror directory), `upstream` (URLs to cache from), or both",
            );
        }
        for url in &r.upstream {
            check_url(v, line, &format!("{at}.upstream"), url);
        }
        repos.push(MirrorRepo {
            prefix: r.prefix.clone(),
            static_dir: r.static_dir.clone(),
            upstream: r
                .upstream
                .iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
        });
    }
    let cache_bytes = match w.cache_size.as_deref() {
        None => crate::config::model::DEFAULT_MIRROR_CACHE,
        Some(size) => match lvm_size(size) {
            Some(bytes) if bytes > 0 => bytes,
            Some(_) => {
                v.problem(
                    line,
                    "mirror.cache_size",
                    "a cache of 0 bytes keeps nothing",
                );
                crate::config::model::DEFAULT_MIRROR_CACHE
            }
            None => {
                v.problem(
                    line,
                    "mirror.cache_size",
                    format!("`{size}` is not a size like `32G` (a whole number and M, G or T; binary units)"),
                );
                crate::config::model::DEFAULT_MIRROR_CACHE
            }
        },
    };
    Mirror {
        cache_dir: w.cache_dir.clone(),
        cache_bytes,
        repos,
    }
}

/// Bytes of an LVM size as an operator writes it (`200G`: binary units, as `lvextend -L`).
pub(super) fn lvm_size(size: &str) -> Option<u64> {
    let size = size.trim();
    let (number, unit) = size.split_at(size.len().checked_sub(1)?);
    let shift = match unit {
        "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(1 << shift)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{problems_after, refused};
    use super::lvm_size;

    #[test]
    fn repositories_have_one_prefix_each_and_upstreams_are_urls() {
        refused(
            "      upstream: [http://archive.ubuntu.com/ubuntu]",
            "      upstream: [http://archive.ubuntu.com/ubuntu]\n    - prefix: ubuntu\n      upstream: [http://deb.example/ubuntu]",
            "mirror.repos[ubuntu].prefix",
            "given twice",
        );
        refused(
            "      upstream: [http://archive.ubuntu.com/ubuntu]",
            "      upstream: [archive.ubuntu.com/ubuntu]",
            "mirror.repos[ubuntu].upstream",
            "",
        );
    }

    #[test]
    fn the_cache_size_is_a_size() {
        let with =
            |size: &str| problems_after("  repos:\n", &format!("  cache_size: {size}\n  repos:\n"));
        assert!(with("64G").is_empty());
        let problems = with("lots");
        assert!(
            problems.len() == 1 && problems[0].starts_with("mirror.cache_size: "),
            "{problems:?}"
        );
        assert_eq!(lvm_size("2T"), Some(2 << 40));
        assert_eq!(lvm_size("200"), None);
    }
}
