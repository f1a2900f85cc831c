//! `registry:`: the container registry's pull-through upstreams.

use super::*;

pub(super) fn registry(
    v: &mut Validator,
    item: &Spanned<wire::RegistryWire>,
    seed: &SeedHost,
) -> Registry {
    let (w, line) = (&item.value, line_of(item));
    let mut upstreams: Vec<RegistryUpstream> = Vec::new();
    for u in &w.upstreams {
        let at = format!("registry.upstreams[{}]", u.prefix);
        // Clients write `seed/<prefix>/<upstream name>`: the prefix is the start of a name.
        if crate::registry::reference::Name::parse(&u.prefix).is_none() {
            v.problem(
                line,
                format!("{at}.prefix"),
                "a prefix is the start of a repository name: lower-case components of a-z, 0-9 \
                 and `.`, `_`, `-` between them, joined by `/` (`quay.io`, `docker.io/library`)",
            );
        }
        let nested = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/"));
        if let Some(other) = upstreams
            .iter()
            .find(|o| nested(&o.prefix, &u.prefix) || nested(&u.prefix, &o.prefix))
        {
            v.problem(
                line,
                format!("{at}.prefix"),
                format!(
                    "overlaps `{}`: a name would belong to both upstreams",
                    other.prefix
                ),
            );
        }
        check_url(v, line, &format!("{at}.url"), &u.url);
        if u.username.is_some() != u.password.is_some() {
            v.problem(
                line,
                format!("{at}.password"),
                "an account is a username and a password: give both or neither",
            );
        }
        upstreams.push(RegistryUpstream {
            prefix: u.prefix.clone(),
            url: u.url.trim_end_matches('/').to_string(),
            username: u.username.clone(),
            password: u.password.as_ref().map(super::seed::secret_ref),
        });
    }
    let tag_max_age = match w.tag_max_age.as_deref() {
        None => crate::config::model::DEFAULT_TAG_MAX_AGE,
        Some(text) => duration(text).unwrap_or_else(|| {
            v.problem(
                line,
                "registry.tag_max_age",
                format!("`{text}` is not a duration like `5m` (a whole number and s, m or h)"),
            );
            crate::config::model::DEFAULT_TAG_MAX_AGE
        }),
    };
    let cache_bytes = match w.cache_size.as_deref() {
        None => crate::config::model::DEFAULT_REGISTRY_CACHE,
        Some(size) => match super::mirror::lvm_size(size) {
            Some(bytes) if bytes > 0 => bytes,
            _ => {
                v.problem(
                    line,
                    "registry.cache_size",
                    format!(
                        "`{size}` is not a size like `64G` (a whole number above 0 and M, G or T; binary units)"
                    ),
                );
                crate::config::model::DEFAULT_REGISTRY_CACHE
            }
        },
    };
    if let Some(port) = w.port
        && (port == 0 || port == seed.ports.http)
    {
        v.problem(
            line,
            "registry.port",
            format!(
                "{port} is not a port of its own (seed.ports.http is {}; /v2/ is there anyway)",
                seed.ports.http
            ),
        );
    }
    if w.tls.is_some() && w.port.is_none() {
        v.problem(
            line,
            "registry.tls",
            "TLS is served on the registry's own port: give registry.port (5000)",
        );
    }
    Registry {
        upstreams,
        tag_max_age,
        cache_bytes,
        port: w.port,
        tls: w.tls.as_ref().map(|t| (t.cert.clone(), t.key.clone())),
    }
}

/// `30s`, `5m`, `1h`.
fn duration(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.len().checked_sub(1)?);
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(
        number.parse::<u64>().ok()?.checked_mul(seconds)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{problems_after, refused};

    const SECTION: &str = "registry:\n  tag_max_age: 10m\n  upstreams:\n    - { prefix: quay.io, url: \"https://quay.io\" }\n    - { prefix: docker.io/library, url: \"https://registry-1.docker.io\" }\nmirror:";

    fn with(edit: &str, to: &str) -> String {
        SECTION.replace(edit, to)
    }

    #[test]
    fn upstreams_are_name_prefixes_that_do_not_overlap() {
        assert_eq!(problems_after("mirror:", SECTION), Vec::<String>::new());
        refused(
            "mirror:",
            &with("prefix: quay.io", "prefix: Quay.IO"),
            "registry.upstreams[Quay.IO].prefix",
            "start of a repository name",
        );
        refused(
            "mirror:",
            &with("prefix: quay.io", "prefix: docker.io"),
            "registry.upstreams[docker.io/library].prefix",
            "overlaps `docker.io`",
        );
        refused(
            "mirror:",
            &with("\"https://quay.io\"", "quay.io"),
            "registry.upstreams[quay.io].url",
            "",
        );
        refused(
            "mirror:",
            &with("10m", "10 minutes"),
            "registry.tag_max_age",
            "not a duration",
        );
        assert_eq!(
            problems_after("mirror:", &with("tag_max_age: 10m", "port: 5000")),
            Vec::<String>::new()
        );
        refused(
            "mirror:",
            &with(
                "tag_max_age: 10m",
                "tls: { cert: /etc/seed/c.pem, key: /etc/seed/k.pem }",
            ),
            "registry.tls",
            "give registry.port",
        );
        refused(
            "mirror:",
            &with("tag_max_age: 10m", "port: 80"),
            "registry.port",
            "not a port of its own",
        );
    }

    #[test]
    fn the_cache_size_is_a_size_and_an_account_is_both_halves() {
        assert_eq!(
            problems_after("mirror:", &with("tag_max_age: 10m", "cache_size: 200G")),
            Vec::<String>::new()
        );
        for bad in ["0G", "200", "lots", "-1G"] {
            refused(
                "mirror:",
                &with("tag_max_age: 10m", &format!("cache_size: \"{bad}\"")),
                "registry.cache_size",
                "not a size",
            );
        }
        let account = with(
            "url: \"https://quay.io\" }",
            "url: \"https://quay.io\", username: robot, password: { file: /etc/seed/quay } }",
        );
        assert_eq!(problems_after("mirror:", &account), Vec::<String>::new());
        refused(
            "mirror:",
            &account.replace(", password: { file: /etc/seed/quay }", ""),
            "registry.upstreams[quay.io].password",
            "give both or neither",
        );
        refused(
            "mirror:",
            &account.replace("username: robot, ", ""),
            "registry.upstreams[quay.io].password",
            "give both or neither",
        );
    }
}
