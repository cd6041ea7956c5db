//! Paired runs, their ratios and the goals table (pure: no processes, no I/O).
//!
//! A pair is one run without the agent and one with it, back to back; its ratio says how much of
//! the host's speed is left with the agent (1.0: nothing lost). A goal's value is the median of
//! its pairs' ratios, so one noisy run on a shared machine does not decide it. Ratios above 1 are
//! noise and are shown as they are.
use serde_json::{json, Value};

/// Median of `values` (mean of the two middle ones for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// Which way a raw measurement is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// A throughput (requests/s, connects/s): ratio = with / without.
    Higher,
    /// A time per operation (ns/call, µs/request): ratio = without / with.
    Lower,
}

/// One run without the agent and one with it, back to back.
#[derive(Clone, Copy, Debug)]
pub struct Pair {
    pub without: f64,
    pub with: f64,
    /// The run with the agent went first (pairs alternate).
    pub with_first: bool,
}

impl Pair {
    pub fn ratio(&self, better: Better) -> f64 {
        match better {
            Better::Higher => self.with / self.without,
            Better::Lower => self.without / self.with,
        }
    }
}

/// The pairs of one ratio goal.
pub struct Series {
    /// Key in results.json.
    pub key: &'static str,
    /// Name in the table.
    pub name: &'static str,
    /// Unit of the raw measurements.
    pub unit: &'static str,
    pub better: Better,
    /// The goal: median ratio at least this.
    pub goal: f64,
    pub pairs: Vec<Pair>,
    /// The median ratio of the same load with empty programs on the agent's hooks (see
    /// `floor.rs`): no agent can do better on this kernel.
    pub floor: Option<f64>,
}

impl Series {
    pub fn new(
        key: &'static str,
        name: &'static str,
        unit: &'static str,
        better: Better,
        goal: f64,
    ) -> Self {
        Self {
            key,
            name,
            unit,
            better,
            goal,
            pairs: Vec::new(),
            floor: None,
        }
    }

    pub fn ratios(&self) -> Vec<f64> {
        self.pairs.iter().map(|p| p.ratio(self.better)).collect()
    }

    pub fn median_ratio(&self) -> Option<f64> {
        median(&self.ratios())
    }

    pub fn median_without(&self) -> Option<f64> {
        median(&self.pairs.iter().map(|p| p.without).collect::<Vec<_>>())
    }

    pub fn median_with(&self) -> Option<f64> {
        median(&self.pairs.iter().map(|p| p.with).collect::<Vec<_>>())
    }

    pub fn row(&self) -> Row {
        let median = self.median_ratio();
        Row {
            key: self.key,
            name: self.name.to_string(),
            value: median.map_or_else(|| "-".to_string(), |m| format!("{m:.3}")),
            median,
            goal: format!(">= {}", self.goal),
            runs: self.pairs.len(),
            met: median.map(|m| m >= self.goal),
            floor: self.floor,
        }
    }

    /// `name: medians without -> with, and each pair's ratio`.
    pub fn detail(&self) -> String {
        let ratios: Vec<String> = self.ratios().iter().map(|r| format!("{r:.3}")).collect();
        format!(
            "{:<42} {} -> {} {} (medians without -> with the agent); pair ratios {}",
            self.name,
            number(self.median_without()),
            number(self.median_with()),
            self.unit,
            ratios.join(" ")
        )
    }

    pub fn json(&self) -> Value {
        json!({
            "name": self.name,
            "unit": self.unit,
            "ratio": match self.better {
                Better::Higher => "with / without",
                Better::Lower => "without / with",
            },
            "goal_min_ratio": self.goal,
            "median_ratio": self.median_ratio(),
            "kernel_floor_ratio": self.floor,
            "met": self.median_ratio().map(|m| m >= self.goal),
            "pairs": self.pairs.iter().map(|p| json!({
                "without": p.without,
                "with": p.with,
                "order": if p.with_first { "with first" } else { "without first" },
                "ratio": p.ratio(self.better),
            })).collect::<Vec<_>>(),
        })
    }
}

/// A raw value with a precision that suits its size.
fn number(v: Option<f64>) -> String {
    match v {
        None => "-".to_string(),
        Some(v) if v.abs() >= 1000.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.3}"),
    }
}

/// A time goal: the median of the runs' seconds at most `goal_secs`. A run that never got there
/// (`None`, e.g. not back to baseline within the limit) counts as infinitely long.
pub struct Timing {
    pub key: &'static str,
    pub name: &'static str,
    pub goal_secs: f64,
    pub samples: Vec<Option<f64>>,
}

impl Timing {
    pub fn new(key: &'static str, name: &'static str, goal_secs: f64) -> Self {
        Self {
            key,
            name,
            goal_secs,
            samples: Vec::new(),
        }
    }

    pub fn median(&self) -> Option<f64> {
        let values: Vec<f64> = self
            .samples
            .iter()
            .map(|s| s.unwrap_or(f64::INFINITY))
            .collect();
        median(&values)
    }

    pub fn row(&self) -> Row {
        let median = self.median();
        Row {
            key: self.key,
            name: self.name.to_string(),
            value: match median {
                None => "-".to_string(),
                Some(m) if m.is_infinite() => "never".to_string(),
                Some(m) => format!("{m:.2} s"),
            },
            median: median.filter(|m| m.is_finite()),
            goal: format!("<= {} s", self.goal_secs),
            runs: self.samples.len(),
            met: median.map(|m| m <= self.goal_secs),
            floor: None,
        }
    }

    pub fn detail(&self) -> String {
        let samples: Vec<String> = self
            .samples
            .iter()
            .map(|s| s.map_or_else(|| "never".to_string(), |s| format!("{s:.2}")))
            .collect();
        format!("{:<42} runs: {} s", self.name, samples.join(" "))
    }
}

/// One line of the goals table.
pub struct Row {
    /// The key of its details in results.json.
    pub key: &'static str,
    pub name: String,
    /// The value as the table shows it...
    pub value: String,
    /// ...and as a number (a ratio, seconds or a count; `None`: not measured or never).
    pub median: Option<f64>,
    pub goal: String,
    pub runs: usize,
    /// `None`: not measured.
    pub met: Option<bool>,
    /// The best ratio this kernel allows (empty programs on the same hooks), when measured.
    pub floor: Option<f64>,
}

impl Row {
    /// Whether the kernel's own floor is below the goal: the goal is out of reach here.
    fn impossible(&self, goal: f64) -> bool {
        self.floor.is_some_and(|f| f < goal)
    }

    pub fn verdict(&self) -> String {
        match self.met {
            Some(true) => "met".into(),
            Some(false) => match self.floor {
                Some(floor) if self.goal_ratio().is_some_and(|g| self.impossible(g)) => {
                    format!("MISSED; out of reach here: empty hooks alone give {floor:.3}")
                }
                _ => "MISSED".into(),
            },
            None => "not measured".into(),
        }
    }

    /// The goal as a ratio (`>= x`), for ratio rows.
    fn goal_ratio(&self) -> Option<f64> {
        self.goal.strip_prefix(">= ")?.parse().ok()
    }

    pub fn json(&self) -> Value {
        json!({
            "key": self.key, "goal": self.name, "value": self.value, "median": self.median, "target": self.goal,
            "runs": self.runs, "met": self.met, "kernel_floor_ratio": self.floor,
        })
    }
}

/// The goals table, header first.
pub fn table(rows: &[Row]) -> Vec<String> {
    let line = |a: &str, b: &str, c: &str, d: &str, e: &str| {
        format!("{a:<42}{b:<14}{c:<9}{d:<6}{e}")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line("goal", "median ratio", "goal", "runs", "verdict")];
    for r in rows {
        out.push(line(
            &r.name,
            &r.value,
            &r.goal,
            &r.runs.to_string(),
            &r.verdict(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn ratios_say_how_much_speed_is_left() {
        let p = Pair {
            without: 100.0,
            with: 80.0,
            with_first: false,
        };
        assert_eq!(p.ratio(Better::Higher), 0.8);
        assert_eq!(p.ratio(Better::Lower), 1.25);
        let t = Pair {
            without: 80.0,
            with: 100.0,
            with_first: true,
        };
        assert_eq!(t.ratio(Better::Lower), 0.8);
    }

    #[test]
    fn a_goal_is_the_median_of_the_pair_ratios() {
        let mut s = Series::new(
            "k",
            "untargeted getppid() loop",
            "ns/call",
            Better::Lower,
            0.99,
        );
        for (without, with) in [(99.0, 100.0), (90.0, 100.0), (101.0, 100.0)] {
            s.pairs.push(Pair {
                without,
                with,
                with_first: false,
            });
        }
        assert_eq!(s.median_ratio(), Some(0.99));
        let row = s.row();
        assert_eq!(row.value, "0.990");
        assert_eq!(row.verdict(), "met");
        s.goal = 0.995;
        assert_eq!(s.row().verdict(), "MISSED");
        // Below a floor that is itself under the goal: out of reach, and said so.
        s.floor = Some(0.9);
        assert_eq!(
            s.row().verdict(),
            "MISSED; out of reach here: empty hooks alone give 0.900"
        );
        s.floor = Some(0.999);
        assert_eq!(s.row().verdict(), "MISSED");
        assert_eq!(s.json()["kernel_floor_ratio"], 0.999);
        assert_eq!(s.json()["pairs"][2]["ratio"], 1.01);
    }

    #[test]
    fn a_run_that_never_got_there_counts_as_infinitely_long() {
        let mut t = Timing::new("k", "back to baseline after stop", 10.0);
        t.samples = vec![Some(2.0), None, None];
        assert_eq!(t.row().value, "never");
        assert_eq!(t.row().verdict(), "MISSED");
        t.samples = vec![Some(2.0), None, Some(3.0)];
        assert_eq!(t.row().value, "3.00 s");
        assert_eq!(t.row().verdict(), "met");
        assert!(
            t.detail().ends_with("runs: 2.00 never 3.00 s"),
            "{}",
            t.detail()
        );
    }

    #[test]
    fn the_table_lines_up() {
        let rows = [
            Row {
                key: "a",
                name: "untargeted getppid() loop".into(),
                value: "0.991".into(),
                median: Some(0.991),
                goal: ">= 0.99".into(),
                runs: 5,
                met: Some(true),
                floor: None,
            },
            Row {
                key: "b",
                name: "ready after start".into(),
                value: "0.42 s".into(),
                median: Some(0.42),
                goal: "<= 1 s".into(),
                runs: 5,
                met: Some(true),
                floor: None,
            },
        ];
        assert_eq!(
            table(&rows),
            [
                "goal                                      median ratio  goal     runs  verdict",
                "untargeted getppid() loop                 0.991         >= 0.99  5     met",
                "ready after start                         0.42 s        <= 1 s   5     met",
            ]
        );
    }
}
