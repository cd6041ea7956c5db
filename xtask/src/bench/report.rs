//! Paired runs, their ratios, confidence intervals, verdicts and the goals table (pure: no
//! processes, no I/O).
//!
//! A pair is one run without the agent and one with it, close together; its ratio says how much
//! of the host's speed is left with the agent (1.0: nothing lost; above 1 is noise, shown as it
//! is). A ratio goal's value is the median of its pairs' ratios. Beside it: a distribution-free
//! 90 % confidence interval for that median ([`median_ci`]), and a verdict ([`Verdict`]):
//! **MET** when the median meets the goal, **MISSED** when the whole interval is on the wrong side
//! of it, **UNDECIDED** when the noise is too large to tell.
//!
//! A [`Measure`] is a goal on a plain value instead (seconds to ready, records per second): the
//! median of its samples against a bound, judged the same way.
use serde_json::{json, Value};

/// Median of `values` (mean of the two middle ones for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let sorted = sorted(values);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
}

/// The confidence level of every interval the bench reports.
pub const LEVEL: f64 = 0.90;

/// A confidence interval for a median.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ci {
    pub low: f64,
    pub high: f64,
    /// Its exact coverage (at least the level asked for; the order statistics make it discrete).
    pub coverage: f64,
}

/// P(X <= k) for X ~ Binomial(n, 1/2).
fn binomial_half_cdf(n: usize, k: usize) -> f64 {
    let mut term = 0.5f64.powi(n as i32); // C(n, 0) / 2^n
    let mut sum = 0.0;
    for i in 0..=k.min(n) {
        sum += term;
        term = term * (n - i) as f64 / (i + 1) as f64;
    }
    sum
}

/// The order-statistic confidence interval for the median of `values` (independent samples of
/// any continuous distribution): `[x(l), x(n+1-l)]` of the sorted values, with the largest `l`
/// whose coverage `1 - 2 P(Binomial(n, 1/2) < l)` is at least `level`. No assumption about the
/// shape of the noise, and no randomness. `None` when there are too few values for any interval
/// to reach `level` (fewer than 5 for 90 %).
pub fn median_ci(values: &[f64], level: f64) -> Option<Ci> {
    let n = values.len();
    let coverage = |l: usize| 1.0 - 2.0 * binomial_half_cdf(n, l - 1);
    if n == 0 || coverage(1) < level {
        return None;
    }
    let mut l = 1;
    while l < n.div_ceil(2) && coverage(l + 1) >= level {
        l += 1;
    }
    let sorted = sorted(values);
    Some(Ci {
        low: sorted[l - 1],
        high: sorted[n - l],
        coverage: coverage(l),
    })
}

/// Which way a raw measurement is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// A throughput (requests/s, connects/s, records/s): for a pair, ratio = with / without.
    Higher,
    /// A time (ns/call, µs/request, seconds): for a pair, ratio = without / with.
    Lower,
}

/// How a goal came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The median meets the goal.
    Met,
    /// The whole confidence interval misses the goal.
    Missed,
    /// The median misses the goal but the interval reaches it (or there are too few runs for an
    /// interval): the noise is too large to tell.
    Undecided,
    NotMeasured,
}

impl Verdict {
    /// Judge a median and its interval against `goal`, `better` saying which side meets it.
    pub fn judge(median: Option<f64>, ci: Option<Ci>, goal: f64, better: Better) -> Self {
        let Some(m) = median else {
            return Self::NotMeasured;
        };
        let (meets, beyond) = match better {
            Better::Higher => (m >= goal, ci.is_some_and(|c| c.high < goal)),
            Better::Lower => (m <= goal, ci.is_some_and(|c| c.low > goal)),
        };
        if meets {
            Self::Met
        } else if beyond {
            Self::Missed
        } else {
            Self::Undecided
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Self::Met => "MET",
            Self::Missed => "MISSED",
            Self::Undecided => "UNDECIDED",
            Self::NotMeasured => "not measured",
        }
    }

    /// The word in results.json.
    pub fn key(self) -> &'static str {
        match self {
            Self::Met => "met",
            Self::Missed => "missed",
            Self::Undecided => "undecided",
            Self::NotMeasured => "not measured",
        }
    }
}

/// One run without the agent and one with it, close together.
#[derive(Clone, Copy, Debug)]
pub struct Pair {
    pub without: f64,
    pub with: f64,
    /// The run with the agent went first (windows alternate); side by side, where both run at
    /// once: the hooked copy was side a.
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

/// The median ratio of the same load with empty programs on the agent's hooks (see `floor.rs`)
/// and its interval: no agent on those hooks can do better on this kernel.
#[derive(Clone, Copy, Debug)]
pub struct Floor {
    pub median: f64,
    pub ci: Option<Ci>,
}

/// The pairs of one ratio goal (or of a floor: a series without a goal of its own).
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
    pub floor: Option<Floor>,
    /// Both runs of a pair ran at once (`side.rs`).
    pub side_by_side: bool,
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
            side_by_side: false,
        }
    }

    pub fn ratios(&self) -> Vec<f64> {
        self.pairs.iter().map(|p| p.ratio(self.better)).collect()
    }

    pub fn median_ratio(&self) -> Option<f64> {
        median(&self.ratios())
    }

    pub fn ci(&self) -> Option<Ci> {
        median_ci(&self.ratios(), LEVEL)
    }

    pub fn median_without(&self) -> Option<f64> {
        median(&self.pairs.iter().map(|p| p.without).collect::<Vec<_>>())
    }

    pub fn median_with(&self) -> Option<f64> {
        median(&self.pairs.iter().map(|p| p.with).collect::<Vec<_>>())
    }

    /// This series as the floor of another (`None`: not measured).
    pub fn as_floor(&self) -> Option<Floor> {
        Some(Floor {
            median: self.median_ratio()?,
            ci: self.ci(),
        })
    }

    pub fn verdict(&self) -> Verdict {
        Verdict::judge(self.median_ratio(), self.ci(), self.goal, Better::Higher)
    }

    /// The best ratio an agent on the floor's hooks could reach with a program that costs
    /// `goal` of what is left: goal × floor (a floor above 1 is noise and counts as 1).
    pub fn goal_times_floor(&self) -> Option<f64> {
        self.floor.map(|f| self.goal * f.median.min(1.0))
    }

    /// The verdict with what the floor says about a goal that was not met.
    pub fn verdict_text(&self) -> String {
        let verdict = self.verdict();
        let (Some(floor), Some(reach)) = (self.floor, self.goal_times_floor()) else {
            return verdict.word().to_string();
        };
        if matches!(verdict, Verdict::Met | Verdict::NotMeasured) {
            return verdict.word().to_string();
        }
        let against = Verdict::judge(self.median_ratio(), self.ci(), reach, Better::Higher);
        let out_of_reach = floor.ci.is_some_and(|c| c.high < self.goal);
        format!(
            "{}; {}empty hooks alone give {:.3}; against goal x floor ({reach:.3}): {}",
            verdict.word(),
            if out_of_reach {
                "out of reach on this kernel: "
            } else {
                ""
            },
            floor.median,
            against.word()
        )
    }

    pub fn row(&self) -> Row {
        let median = self.median_ratio();
        Row {
            key: self.key,
            name: self.name.to_string(),
            value: median.map_or_else(|| "-".to_string(), |m| format!("{m:.3}")),
            median,
            ci: self.ci(),
            ci_text: ci_text(self.ci(), |v| format!("{v:.3}")),
            goal: format!(">= {}", self.goal),
            runs: self.pairs.len(),
            verdict: self.verdict(),
            verdict_text: self.verdict_text(),
            floor: self.floor.map(|f| f.median),
        }
    }

    /// `name: medians without -> with, and each pair's ratio`.
    pub fn detail(&self) -> String {
        let ratios: Vec<String> = self.ratios().iter().map(|r| format!("{r:.3}")).collect();
        format!(
            "{:<42} {} -> {} {} (medians without -> with); pair ratios {}",
            self.name,
            number(self.median_without()),
            number(self.median_with()),
            self.unit,
            ratios.join(" ")
        )
    }

    pub fn json(&self) -> Value {
        let ci = self.ci();
        json!({
            "name": self.name,
            "unit": self.unit,
            "ratio": match self.better {
                Better::Higher => "with / without",
                Better::Lower => "without / with",
            },
            "goal_min_ratio": self.goal,
            "median_ratio": self.median_ratio(),
            "ci_low": ci.map(|c| c.low),
            "ci_high": ci.map(|c| c.high),
            "ci_coverage": ci.map(|c| c.coverage),
            "kernel_floor_ratio": self.floor.map(|f| f.median),
            "goal_times_floor": self.goal_times_floor(),
            "verdict": self.verdict().key(),
            "verdict_text": self.verdict_text(),
            "median_without": self.median_without(),
            "median_with": self.median_with(),
            "pairs": self.pairs.iter().map(|p| json!({
                "without": p.without,
                "with": p.with,
                "order": match (self.side_by_side, p.with_first) {
                    (false, true) => "with first",
                    (false, false) => "without first",
                    (true, true) => "at once, hooked side a",
                    (true, false) => "at once, hooked side b",
                },
                "ratio": p.ratio(self.better),
            })).collect::<Vec<_>>(),
        })
    }
}

fn ci_text(ci: Option<Ci>, fmt: impl Fn(f64) -> String) -> String {
    ci.map_or_else(
        || "-".to_string(),
        |c| format!("{}-{}", fmt(c.low), fmt(c.high)),
    )
}

/// A raw value with a precision that suits its size.
pub fn number(v: Option<f64>) -> String {
    match v {
        None => "-".to_string(),
        Some(v) if v.is_infinite() => "never".to_string(),
        Some(v) if v.abs() >= 1e6 => format!("{:.2}M", v / 1e6),
        Some(v) if v.abs() >= 1000.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.3}"),
    }
}

/// A goal on a plain value (not a ratio): the median of the samples against `goal`, on the side
/// `better` says. Seconds are shown as `0.20 s`, anything else as a number and its unit. A
/// sample that never got there (`None`, e.g. not back to baseline within the limit) counts as the
/// worst possible value.
pub struct Measure {
    pub key: &'static str,
    pub name: &'static str,
    /// `s` for seconds, otherwise the unit shown after the value (`records/s`).
    pub unit: &'static str,
    pub better: Better,
    pub goal: f64,
    pub samples: Vec<Option<f64>>,
}

impl Measure {
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
            samples: Vec::new(),
        }
    }

    fn values(&self) -> Vec<f64> {
        let never = match self.better {
            Better::Lower => f64::INFINITY,
            Better::Higher => f64::NEG_INFINITY,
        };
        self.samples.iter().map(|s| s.unwrap_or(never)).collect()
    }

    pub fn median(&self) -> Option<f64> {
        median(&self.values())
    }

    pub fn ci(&self) -> Option<Ci> {
        median_ci(&self.values(), LEVEL)
    }

    pub fn verdict(&self) -> Verdict {
        Verdict::judge(self.median(), self.ci(), self.goal, self.better)
    }

    fn show(&self, v: f64) -> String {
        match (self.unit, v) {
            (_, v) if v.is_infinite() => "never".to_string(),
            ("s", v) => format!("{v:.2} s"),
            (unit, v) => format!("{} {unit}", number(Some(v))),
        }
    }

    pub fn row(&self) -> Row {
        let median = self.median();
        let bound = if self.unit == "s" {
            format!("{} s", self.goal)
        } else {
            number(Some(self.goal))
        };
        Row {
            key: self.key,
            name: self.name.to_string(),
            value: median.map_or_else(|| "-".to_string(), |m| self.show(m)),
            median: median.filter(|m| m.is_finite()),
            ci: self.ci(),
            ci_text: ci_text(self.ci(), |v| match self.unit {
                "s" if v.is_finite() => format!("{v:.2}"),
                _ => number(Some(v)),
            }),
            goal: match self.better {
                Better::Lower => format!("<= {bound}"),
                Better::Higher => format!(">= {bound}"),
            },
            runs: self.samples.len(),
            verdict: self.verdict(),
            verdict_text: self.verdict().word().to_string(),
            floor: None,
        }
    }

    pub fn detail(&self) -> String {
        let samples: Vec<String> = self
            .values()
            .iter()
            .map(|&v| match self.unit {
                "s" if v.is_finite() => format!("{v:.2}"),
                _ => number(Some(v)),
            })
            .collect();
        format!(
            "{:<42} runs: {} {}",
            self.name,
            samples.join(" "),
            self.unit
        )
    }

    pub fn json(&self) -> Value {
        let ci = self.ci();
        let finite = |v: f64| v.is_finite().then_some(v);
        json!({
            "name": self.name,
            "unit": self.unit,
            "better": match self.better {
                Better::Higher => "higher",
                Better::Lower => "lower",
            },
            "goal": self.goal,
            "median": self.median().and_then(finite),
            "ci_low": ci.and_then(|c| finite(c.low)),
            "ci_high": ci.and_then(|c| finite(c.high)),
            "ci_coverage": ci.map(|c| c.coverage),
            "verdict": self.verdict().key(),
            "samples": self.samples,
        })
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
    pub ci: Option<Ci>,
    pub ci_text: String,
    pub goal: String,
    pub runs: usize,
    pub verdict: Verdict,
    /// The verdict with what the floor says, as the table shows it.
    pub verdict_text: String,
    /// The median ratio of the same load with empty programs on the same hooks, when measured.
    pub floor: Option<f64>,
}

impl Row {
    /// A goal with one exact outcome (a count): met or missed, no interval.
    pub fn exact(key: &'static str, name: &str, value: Option<u64>, goal: &str, met: bool) -> Self {
        let verdict = match value {
            None => Verdict::NotMeasured,
            Some(_) if met => Verdict::Met,
            Some(_) => Verdict::Missed,
        };
        Row {
            key,
            name: name.to_string(),
            value: value.map_or_else(|| "-".into(), |v| v.to_string()),
            median: value.map(|v| v as f64),
            ci: None,
            ci_text: "-".into(),
            goal: goal.into(),
            runs: usize::from(value.is_some()),
            verdict,
            verdict_text: verdict.word().into(),
            floor: None,
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "key": self.key, "goal": self.name, "value": self.value, "median": self.median,
            "ci_low": self.ci.map(|c| c.low).filter(|v| v.is_finite()),
            "ci_high": self.ci.map(|c| c.high).filter(|v| v.is_finite()),
            "ci_coverage": self.ci.map(|c| c.coverage),
            "target": self.goal, "runs": self.runs,
            "verdict": self.verdict.key(), "verdict_text": self.verdict_text,
            "met": match self.verdict {
                Verdict::NotMeasured => None,
                v => Some(v == Verdict::Met),
            },
            "kernel_floor_ratio": self.floor,
        })
    }
}

/// The goals table, header first.
pub fn table(rows: &[Row]) -> Vec<String> {
    let header = [
        "goal", "median", "90% CI", "goal", "runs", "floor", "verdict",
    ]
    .map(String::from);
    let cells: Vec<[String; 7]> = std::iter::once(header)
        .chain(rows.iter().map(|r| {
            [
                r.name.clone(),
                r.value.clone(),
                r.ci_text.clone(),
                r.goal.clone(),
                r.runs.to_string(),
                r.floor
                    .map_or_else(|| "-".to_string(), |f| format!("{f:.3}")),
                r.verdict_text.clone(),
            ]
        }))
        .collect();
    // Each column as wide as its widest cell plus a gap, never narrower than these.
    let mut widths = [42, 10, 14, 12, 6, 7, 0];
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row).take(6) {
            *w = (*w).max(cell.chars().count() + 2);
        }
    }
    cells
        .iter()
        .map(|row| {
            row.iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect::<String>()
                .trim_end()
                .to_string()
        })
        .collect()
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
    fn median_intervals_are_order_statistics_with_their_exact_coverage() {
        let values: Vec<f64> = (1..=15).rev().map(f64::from).collect();
        // n = 15: P(B <= 3) = 0.0176, P(B <= 4) = 0.0592: [x(4), x(12)], coverage 0.965.
        let ci = median_ci(&values, 0.90).unwrap();
        assert_eq!((ci.low, ci.high), (4.0, 12.0));
        assert!((ci.coverage - 0.96484375).abs() < 1e-9, "{ci:?}");
        // n = 5: only [min, max] reaches 90 % (1 - 2/32 = 0.9375); n = 4 cannot (0.875).
        let ci = median_ci(&[5.0, 1.0, 3.0, 2.0, 4.0], 0.90).unwrap();
        assert_eq!((ci.low, ci.high, ci.coverage), (1.0, 5.0, 0.9375));
        assert_eq!(median_ci(&[1.0, 2.0, 3.0, 4.0], 0.90), None);
        assert_eq!(median_ci(&[], 0.90), None);
        // Many values: the interval narrows around the median.
        let values: Vec<f64> = (0..101).map(f64::from).collect();
        let ci = median_ci(&values, 0.90).unwrap();
        assert_eq!((ci.low, ci.high), (41.0, 59.0));
        assert!(ci.coverage >= 0.90 && ci.coverage < 0.93, "{ci:?}");
    }

    #[test]
    fn verdicts_met_missed_undecided() {
        let ci = |low, high| {
            Some(Ci {
                low,
                high,
                coverage: 0.95,
            })
        };
        let judge = |m, c, better| Verdict::judge(Some(m), c, 0.95, better);
        assert_eq!(judge(0.96, ci(0.90, 1.0), Better::Higher), Verdict::Met);
        assert_eq!(
            judge(0.93, ci(0.90, 0.96), Better::Higher),
            Verdict::Undecided
        );
        assert_eq!(judge(0.93, ci(0.90, 0.94), Better::Higher), Verdict::Missed);
        assert_eq!(judge(0.93, None, Better::Higher), Verdict::Undecided);
        assert_eq!(judge(0.90, ci(0.80, 1.0), Better::Lower), Verdict::Met);
        assert_eq!(
            judge(0.97, ci(0.90, 1.0), Better::Lower),
            Verdict::Undecided
        );
        assert_eq!(judge(0.97, ci(0.96, 1.0), Better::Lower), Verdict::Missed);
        assert_eq!(
            Verdict::judge(None, None, 0.95, Better::Higher),
            Verdict::NotMeasured
        );
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

    fn series(goal: f64, ratios: &[f64]) -> Series {
        let mut s = Series::new(
            "k",
            "untargeted UDP connect loop",
            "connects/s",
            Better::Higher,
            goal,
        );
        for &r in ratios {
            s.pairs.push(Pair {
                without: 100.0,
                with: 100.0 * r,
                with_first: false,
            });
        }
        s
    }

    #[test]
    fn a_goal_is_the_median_of_the_pair_ratios_with_its_interval() {
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
        assert_eq!(row.ci_text, "-");
        assert_eq!(row.verdict_text, "MET");
        s.goal = 0.995;
        // Three pairs give no 90 % interval: a miss cannot be told from noise.
        assert_eq!(s.row().verdict_text, "UNDECIDED");
        assert_eq!(s.json()["pairs"][2]["ratio"], 1.01);

        let s = series(0.95, &[0.80, 0.82, 0.84, 0.86, 0.88, 0.90, 0.97]);
        assert_eq!(s.row().ci_text, "0.800-0.970");
        assert_eq!(s.verdict(), Verdict::Undecided);
        let s = series(0.95, &[0.80, 0.82, 0.84, 0.86, 0.88, 0.90, 0.92]);
        assert_eq!(s.verdict(), Verdict::Missed);
        assert_eq!(s.json()["verdict"], "missed");
        assert_eq!(s.json()["ci_high"], 0.92);
    }

    #[test]
    fn a_floor_says_what_any_agent_on_those_hooks_could_reach() {
        let ratios = [0.77, 0.78, 0.79, 0.79, 0.80, 0.81, 0.82];
        let mut s = series(0.95, &ratios);
        let floor = series(0.0, &[0.82, 0.83, 0.83, 0.83, 0.84, 0.85, 0.86]);
        s.floor = floor.as_floor();
        assert_eq!(s.goal_times_floor(), Some(0.95 * 0.83));
        assert_eq!(
            s.row().verdict_text,
            "MISSED; out of reach on this kernel: empty hooks alone give 0.830; \
             against goal x floor (0.788): MET"
        );
        assert_eq!(s.row().floor, Some(0.83));
        // A floor whose interval reaches the goal: not out of reach, only noted.
        let floor = series(0.0, &[0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 1.02]);
        s.floor = floor.as_floor();
        assert_eq!(
            s.row().verdict_text,
            "MISSED; empty hooks alone give 0.950; against goal x floor (0.902): MISSED"
        );
        // A floor above 1 is noise: goal x floor is the goal.
        s.floor = Some(Floor {
            median: 1.02,
            ci: None,
        });
        assert_eq!(s.goal_times_floor(), Some(0.95));
        // Met: the floor is shown in its column only.
        let mut s = series(0.95, &[0.96; 5]);
        s.floor = floor.as_floor();
        assert_eq!(s.row().verdict_text, "MET");
    }

    #[test]
    fn measures_judge_plain_values_either_way() {
        let mut t = Measure::new("k", "back to baseline after stop", "s", Better::Lower, 10.0);
        t.samples = vec![Some(2.0), None, None];
        assert_eq!(t.row().value, "never");
        assert_eq!(t.row().verdict, Verdict::Undecided);
        // One run back in 2 s: the interval reaches the goal.
        t.samples = vec![Some(2.0), None, Some(3.0), None, None];
        assert_eq!(t.row().verdict, Verdict::Undecided);
        t.samples = vec![Some(12.0), None, Some(11.0), None, None];
        assert_eq!(t.row().verdict, Verdict::Missed);
        assert_eq!(t.row().ci_text, "11.00-never");
        t.samples = vec![Some(2.0), None, Some(3.0)];
        assert_eq!(t.row().value, "3.00 s");
        assert_eq!(t.row().goal, "<= 10 s");
        assert_eq!(t.row().verdict_text, "MET");
        assert!(
            t.detail().ends_with("runs: 2.00 never 3.00 s"),
            "{}",
            t.detail()
        );
        assert_eq!(t.json()["median"], 3.0);

        // Higher is better (a throughput): the goal is a lower bound.
        let mut r = Measure::new(
            "replay",
            "replay of a synthetic recording",
            "records/s",
            Better::Higher,
            1_000_000.0,
        );
        r.samples = [1.2e6, 1.1e6, 0.9e6, 1.3e6, 1.25e6].map(Some).to_vec();
        let row = r.row();
        assert_eq!(row.value, "1.20M records/s");
        assert_eq!(row.goal, ">= 1.00M");
        assert_eq!(row.verdict, Verdict::Met);
        r.samples = [0.7e6, 0.8e6, 0.9e6, 0.75e6, 0.85e6].map(Some).to_vec();
        assert_eq!(r.verdict(), Verdict::Missed);
    }

    #[test]
    fn the_table_lines_up() {
        let mut s = series(0.99, &[0.99, 1.0, 0.98, 1.01, 0.995]);
        s.name = "untargeted getppid() loop";
        let mut t = Measure::new("b", "ready after start", "s", Better::Lower, 1.0);
        t.samples = [0.42, 0.4, 0.5, 0.41, 0.43].map(Some).to_vec();
        let rows = [
            s.row(),
            t.row(),
            Row::exact(
                "c",
                "targeted 100k connects/s: events lost",
                Some(0),
                "== 0",
                true,
            ),
        ];
        assert_eq!(
            table(&rows),
            [
                "goal                                      median    90% CI        goal        runs  floor  verdict",
                "untargeted getppid() loop                 0.995     0.980-1.010   >= 0.99     5     -      MET",
                "ready after start                         0.42 s    0.40-0.50     <= 1 s      5     -      MET",
                "targeted 100k connects/s: events lost     0         -             == 0        1     -      MET",
            ]
        );
    }
}
