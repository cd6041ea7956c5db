//! `--only PART[,PART]`: which parts of the bench run (all of them by default). For quick
//! iteration on one series: `cargo xtask bench --only udp,floor-udp --runs 5`.
use std::collections::BTreeSet;

use anyhow::bail;

/// Every part `--only` can name, with what it measures, in the order the bench runs them. A new
/// part (a series, a measure) gets a line here and an `if only.has("name")` around its code.
pub const PARTS: &[(&str, &str)] = &[
    ("getppid", "untargeted getppid() loop (ratio)"),
    ("udp", "untargeted UDP connect loop (ratio)"),
    ("https", "untargeted HTTPS wrk -> nginx (ratio)"),
    ("http", "untargeted HTTP wrk -> nginx (ratio)"),
    (
        "ready",
        "ready after start (seconds; every untargeted agent start)",
    ),
    (
        "back",
        "back to baseline after stop (seconds; every untargeted agent stop)",
    ),
    ("floor-udp", "empty cgroup hooks, UDP connect loop (floor)"),
    ("floor-http", "empty cgroup hooks, HTTP wrk (floor)"),
    ("floor-https", "empty cgroup hooks, HTTPS wrk (floor)"),
    (
        "floor-node",
        "empty cgroup hooks, Node HTTPS keep-alive (floor)",
    ),
    (
        "side-https",
        "untargeted HTTPS wrk, the agent's hooks on one of two copies at once (ratio)",
    ),
    (
        "side-http",
        "untargeted HTTP wrk, the agent's hooks on one of two copies at once (ratio)",
    ),
    (
        "side-floor-https",
        "empty cgroup hooks on one of two HTTPS copies at once (floor)",
    ),
    (
        "side-floor-http",
        "empty cgroup hooks on one of two HTTP copies at once (floor)",
    ),
    (
        "side-balance",
        "two copies of HTTPS and HTTP wrk at once, no hooks (the method's own noise)",
    ),
    (
        "targeted-http",
        "targeted HTTP wrk -> nginx, --comm wrk (ratio)",
    ),
    ("node", "targeted Node HTTPS keep-alive, --pid (ratio)"),
    (
        "bpf-stats",
        "per-program run time and count of the agent's programs",
    ),
    (
        "connect",
        "targeted connect flood, the 100k/s budget, memory",
    ),
    ("churn", "10,000 short-lived targeted processes"),
    (
        "replay",
        "egress-monitor replay of a synthetic 10M-input recording (inputs/s)",
    ),
];

/// Names for several parts at once.
pub const GROUPS: &[(&str, &[&str])] = &[
    (
        "untargeted",
        &["getppid", "udp", "https", "http", "ready", "back"],
    ),
    ("targeted", &["targeted-http", "node"]),
    (
        "side",
        &[
            "side-https",
            "side-http",
            "side-floor-https",
            "side-floor-http",
            "side-balance",
        ],
    ),
    (
        "floors",
        &["floor-udp", "floor-http", "floor-https", "floor-node"],
    ),
];

/// `--only`'s value parser: a part or a group name (so a typo fails before the release build).
pub fn name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if PARTS.iter().any(|(p, _)| *p == name) || GROUPS.iter().any(|(g, _)| *g == name) {
        Ok(name.to_string())
    } else {
        Err(format!(
            "no part named {name:?}; the parts are:\n{}",
            help()
        ))
    }
}

/// The parts selected.
pub struct Only(BTreeSet<&'static str>);

impl Only {
    /// From `--only`'s values (empty: everything).
    pub fn parse(names: &[String]) -> anyhow::Result<Self> {
        let all = || PARTS.iter().map(|(p, _)| *p);
        if names.is_empty() {
            return Ok(Self(all().collect()));
        }
        let mut set = BTreeSet::new();
        for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            if let Some(part) = all().find(|p| *p == name) {
                set.insert(part);
            } else if let Some((_, parts)) = GROUPS.iter().find(|(g, _)| *g == name) {
                set.extend(parts.iter().copied());
            } else {
                bail!("--only: no part named {name:?}; the parts are:\n{}", help());
            }
        }
        if set.is_empty() {
            bail!("--only names no part; the parts are:\n{}", help());
        }
        Ok(Self(set))
    }

    pub fn has(&self, part: &str) -> bool {
        debug_assert!(PARTS.iter().any(|(p, _)| *p == part), "unknown part {part}");
        self.0.contains(part)
    }

    pub fn any(&self, parts: &[&str]) -> bool {
        parts.iter().any(|p| self.has(p))
    }

    /// Everything selected: `None` (results.json: `"only": null`).
    pub fn names(&self) -> Option<Vec<&'static str>> {
        (self.0.len() < PARTS.len()).then(|| {
            PARTS
                .iter()
                .map(|(p, _)| *p)
                .filter(|p| self.0.contains(p))
                .collect()
        })
    }
}

fn help() -> String {
    let mut out: Vec<String> = PARTS
        .iter()
        .map(|(p, what)| format!("  {p:<14} {what}"))
        .collect();
    out.extend(
        GROUPS
            .iter()
            .map(|(g, parts)| format!("  {g:<14} = {}", parts.join(","))),
    );
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(names: &[&str]) -> anyhow::Result<Only> {
        Only::parse(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn nothing_named_is_everything() {
        let all = only(&[]).unwrap();
        assert!(PARTS.iter().all(|(p, _)| all.has(p)));
        assert_eq!(all.names(), None);
    }

    #[test]
    fn parts_and_groups() {
        let o = only(&["udp", " floors"]).unwrap();
        assert!(o.has("udp") && o.has("floor-node") && !o.has("https"));
        assert_eq!(
            o.names().unwrap(),
            [
                "udp",
                "floor-udp",
                "floor-http",
                "floor-https",
                "floor-node"
            ]
        );
        assert!(o.any(&["getppid", "udp"]));
        assert!(!o.any(&["churn", "connect"]));
    }

    #[test]
    fn an_unknown_name_lists_the_parts() {
        let err = only(&["udp", "replay-x"]).err().unwrap().to_string();
        assert!(err.contains("no part named \"replay-x\""), "{err}");
        assert!(err.contains("  floor-https "), "{err}");
        assert!(only(&[""]).is_err());
        assert_eq!(name(" floors"), Ok("floors".to_string()));
        assert!(name("list").unwrap_err().contains("  churn "));
    }
}
