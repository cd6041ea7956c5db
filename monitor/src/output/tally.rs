//! What a run (or a replay) counts of the records it writes: totals, suppressed findings, and
//! the rows of the text view's closing summary. One piece of code for both, so a replay counts
//! and suppresses exactly as the live run did.
use std::{collections::BTreeMap, time::SystemTime};

use super::{text::SummaryKey, Record, Totals};
use crate::suppress::Suppressions;

/// Summary rows kept at most.
pub const SUMMARY_ROWS: usize = 1000;

pub struct Tally {
    pub totals: Totals,
    /// `[[suppress]]`: findings these cover are counted, not printed.
    pub suppressions: Suppressions,
    /// Findings by severity, id, process and destination, for the text view's closing table.
    pub summary: BTreeMap<SummaryKey, u64>,
    /// Summary rows not kept (the table is bounded).
    pub summary_more: u64,
}

impl Tally {
    pub fn new(suppressions: Suppressions) -> Self {
        Self {
            totals: Totals::default(),
            suppressions,
            summary: BTreeMap::new(),
            summary_more: 0,
        }
    }

    /// Count a record about to be written. `false`: a suppressed finding (counted, not to be
    /// written). Suppression expiry is judged at `now`.
    pub fn admit(
        &mut self,
        record: &Record,
        now: SystemTime,
        metrics: &crate::metrics::Metrics,
    ) -> bool {
        match record {
            Record::Event(_) => self.totals.events += 1,
            Record::Finding(f) => {
                if let Some(s) = self.suppressions.find(f, now) {
                    *self.totals.suppressed.entry(s.id.clone()).or_default() += 1;
                    metrics.suppressed(f.id);
                    return false;
                }
                self.totals.findings += 1;
                let key = SummaryKey {
                    severity: f.id.severity(),
                    id: f.id.as_str(),
                    pid: f.process.pid,
                    comm: f.process.comm.clone(),
                    destination: f.destination.as_ref().map_or(String::new(), |d| {
                        let addr = std::net::SocketAddr::new(d.ip, d.port).to_string();
                        match &d.hostname {
                            Some(h) => format!("{h} ({addr})"),
                            None => addr,
                        }
                    }),
                };
                // A repeated finding comes again with its grown count: keep the largest.
                let count = f.count.max(1);
                if let Some(n) = self.summary.get_mut(&key) {
                    *n = (*n).max(count);
                } else if self.summary.len() < SUMMARY_ROWS {
                    self.summary.insert(key, count);
                } else {
                    self.summary_more += 1;
                }
            }
            Record::Status(_) => {}
        }
        true
    }
}
