//! Findings deduplicated per (id, process, destination) with a count, so a busy process
//! cannot flood the output: the first occurrence is reported at once, repeats are counted and
//! reported as updated counts on `flush` (periodically and at shutdown).
use std::{collections::HashMap, net::IpAddr};

use crate::output::finding::{Finding, FindingId};

type Key = (FindingId, u32, Option<(IpAddr, u16)>);

#[derive(Debug, Default)]
pub struct Dedup {
    seen: HashMap<Key, (Finding, u64)>,
}

impl Dedup {
    /// `Some(finding)` (count 1) the first time, `None` for a repeat.
    pub fn observe(&mut self, finding: Finding) -> Option<Finding> {
        let key = (
            finding.id,
            finding.process.pid,
            finding.destination.as_ref().map(|d| (d.ip, d.port)),
        );
        match self.seen.get_mut(&key) {
            Some((latest, _reported)) => {
                let count = latest.count + 1;
                *latest = Finding { count, ..finding };
                None
            }
            None => {
                let first = Finding {
                    count: 1,
                    ..finding
                };
                self.seen.insert(key, (first.clone(), 1));
                Some(first)
            }
        }
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

    /// Forget a finished process (its counts were flushed by the caller first).
    pub fn forget_process(&mut self, pid: u32) {
        self.seen.retain(|k, _| k.1 != pid);
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::SystemTime};

    use super::*;
    use crate::{output::Destination, process::ProcessInfo};

    fn finding(pid: u32, port: u16) -> Finding {
        Finding {
            time: SystemTime::UNIX_EPOCH,
            id: FindingId::TlsVerifyDisabled,
            process: Arc::new(ProcessInfo {
                pid,
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
        assert_eq!(d.observe(finding(1, 443)).unwrap().count, 1);
        assert!(d.observe(finding(1, 443)).is_none());
        assert!(d.observe(finding(1, 443)).is_none());
        assert!(
            d.observe(finding(1, 8443)).is_some(),
            "another destination is another finding"
        );
        assert!(d.observe(finding(2, 443)).is_some(), "another process too");
        let flushed = d.flush();
        assert_eq!(flushed.len(), 1);
        assert_eq!(flushed[0].count, 3);
        assert!(d.flush().is_empty(), "nothing new since");
        d.forget_process(1);
        assert!(d.observe(finding(1, 443)).is_some());
    }
}
