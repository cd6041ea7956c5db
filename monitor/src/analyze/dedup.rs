//! Findings deduplicated per (id, process, destination) with a count, so a busy process
//! cannot flood the output: the first occurrence is reported at once, repeats are counted and
//! reported as updated counts on `flush` (periodically, at the process's exit and at shutdown).
//! One `Dedup` belongs to one process (its `ProcessState`), so a reused pid starts from zero.
use std::{collections::HashMap, net::IpAddr};

use crate::output::finding::{Finding, FindingId};

type Key = (FindingId, Option<(IpAddr, u16)>);

/// Distinct findings remembered per process, at most; beyond that a new one is still reported
/// but not counted (the caller counts the overflow).
pub const MAX_PER_PROCESS: usize = 1024;

#[derive(Debug, Default)]
pub struct Dedup {
    seen: HashMap<Key, (Finding, u64)>,
}

/// What [`Dedup::observe`] decided.
#[derive(Debug, PartialEq)]
pub enum Seen {
    /// The first of its kind: report it.
    First(Finding),
    /// A repeat: counted, reported on the next flush.
    Repeat,
    /// The first of its kind, but the table is full: report it, its repeats will not be counted.
    Uncounted(Finding),
}

impl Dedup {
    pub fn observe(&mut self, finding: Finding) -> Seen {
        let key = (
            finding.id,
            finding.destination.as_ref().map(|d| (d.ip, d.port)),
        );
        if let Some((latest, _reported)) = self.seen.get_mut(&key) {
            let count = latest.count + 1;
            *latest = Finding { count, ..finding };
            return Seen::Repeat;
        }
        let first = Finding {
            count: 1,
            ..finding
        };
        if self.seen.len() >= MAX_PER_PROCESS {
            return Seen::Uncounted(first);
        }
        self.seen.insert(key, (first.clone(), 1));
        Seen::First(first)
    }

    /// Findings whose count grew since they were last reported.
    pub fn flush(&mut self) -> Vec<Finding> {
        let mut out = Vec::new();
        for (latest, reported) in self.seen.values_mut() {
            if latest.count > *reported {
                *reported = latest.count;
                out.push(latest.clone());
            }
        }
        out.sort_by_key(|f| (f.time, f.id));
        out
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::SystemTime};

    use super::*;
    use crate::{output::Destination, process::ProcessInfo};

    fn finding(port: u16) -> Finding {
        Finding {
            time: SystemTime::UNIX_EPOCH,
            id: FindingId::TlsVerifyDisabled,
            process: Arc::new(ProcessInfo {
                pid: 1,
                ..Default::default()
            }),
            destination: Some(Destination {
                ip: "10.203.0.2".parse().unwrap(),
                port,
                hostname: None,
            }),
            evidence: serde_json::json!({}),
            count: 0,
        }
    }

    #[test]
    fn first_is_reported_repeats_are_counted() {
        let mut d = Dedup::default();
        assert!(matches!(d.observe(finding(443)), Seen::First(f) if f.count == 1));
        assert_eq!(d.observe(finding(443)), Seen::Repeat);
        assert_eq!(d.observe(finding(443)), Seen::Repeat);
        assert!(
            matches!(d.observe(finding(8443)), Seen::First(_)),
            "another destination is another finding"
        );
        let flushed = d.flush();
        assert_eq!(flushed.len(), 1);
        assert_eq!(flushed[0].count, 3);
        assert!(d.flush().is_empty(), "nothing new since");
    }

    #[test]
    fn the_table_is_bounded() {
        let mut d = Dedup::default();
        for port in 0..MAX_PER_PROCESS as u16 {
            assert!(matches!(d.observe(finding(port)), Seen::First(_)));
        }
        assert!(matches!(d.observe(finding(u16::MAX)), Seen::Uncounted(_)));
        assert_eq!(d.len(), MAX_PER_PROCESS);
    }
}
