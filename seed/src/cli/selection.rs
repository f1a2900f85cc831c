//! Which nodes a command acts on, and running over them in parallel.

use clap::Args;

use crate::config::Config;

/// Which nodes a command acts on: names, `--role`, or `--all`.
#[derive(Debug, Args)]
pub(super) struct Selection {
    /// The nodes.
    #[arg(required_unless_present_any = ["all", "role"])]
    pub(super) nodes: Vec<String>,
    /// Every node of this role (repeatable).
    #[arg(long, conflicts_with = "all")]
    pub(super) role: Vec<String>,
    /// Every node of the config.
    #[arg(long, conflicts_with = "nodes")]
    pub(super) all: bool,
}

impl Selection {
    /// The nodes, in config order for `--role`/`--all`, each checked to exist.
    pub(super) fn names(&self, config: &Config) -> anyhow::Result<Vec<String>> {
        if self.all {
            return Ok(config.nodes.iter().map(|n| n.name.clone()).collect());
        }
        for role in &self.role {
            if !config.roles.iter().any(|r| &r.name == role) {
                anyhow::bail!(
                    "no role named {role} in {} (roles: {})",
                    config.source.display(),
                    config
                        .roles
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        let mut names: Vec<String> = Vec::new();
        for name in &self.nodes {
            if config.node(name).is_none() {
                anyhow::bail!("no node named {name} in {}", config.source.display());
            }
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        for role in &self.role {
            let members: Vec<&str> = config
                .nodes
                .iter()
                .filter(|n| &n.role == role)
                .map(|n| n.name.as_str())
                .collect();
            if members.is_empty() {
                anyhow::bail!("role {role} has no nodes in {}", config.source.display());
            }
            for name in members {
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_string());
                }
            }
        }
        Ok(names)
    }
}

/// `f` over `items` on up to `parallel` threads (BMCs take seconds per call; a rack's worth
/// should not add up), the results in the items' order.
pub(super) fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    parallel: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    use std::sync::Mutex;
    let results: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let next = Mutex::new(0usize);
    std::thread::scope(|scope| {
        for _ in 0..parallel.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = {
                        let mut next = next.lock().unwrap_or_else(|e| e.into_inner());
                        *next += 1;
                        *next - 1
                    };
                    let Some(item) = items.get(i) else { break };
                    let result = f(item);
                    *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                }
            });
        }
    });
    results
        .into_iter()
        .filter_map(|r| r.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn in_parallel_keeps_the_order_and_the_bound() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let items: Vec<u32> = (0..20).collect();
        let out = in_parallel(&items, 3, |i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(5));
            running.fetch_sub(1, Ordering::SeqCst);
            i * 2
        });
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) <= 3);
        assert!(in_parallel(&Vec::<u32>::new(), 4, |i| *i).is_empty());
    }
}
