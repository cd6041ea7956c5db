//! `egress-monitor replay FILE`: a recording through the same analysis as `run`, with this
//! invocation's configuration (pins, suppressions, authentication hosts apply to old traffic).
//! Needs no privileges and no kernel support: it reads a file.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Instant, SystemTime},
};

use crate::{
    analyze::{input::Input, Out},
    config::Config,
    output::{tally::Tally, Format, Record, Sink, Status, StatusKind, Totals},
    record::Reader,
};

pub struct ReplayArgs {
    pub file: PathBuf,
    pub format: Option<Format>,
    pub output: Option<PathBuf>,
    pub config: Option<PathBuf>,
}

/// What a replay went through.
#[derive(Debug, Default)]
pub struct Replayed {
    pub inputs: u64,
    pub seconds: f64,
}

/// Emit what the analysis produced, counted and suppressed as `run` does (suppression expiry
/// is judged at the time of the finding: the replay judges the past).
fn emit(sink: &mut Sink, tally: &mut Tally, out: &mut Out) -> anyhow::Result<()> {
    // A replay serves no metrics.
    let metrics = crate::metrics::Metrics::off();
    for record in out.records.drain(..) {
        let at = match &record {
            Record::Finding(f) => f.time,
            _ => SystemTime::now(),
        };
        if tally.admit(&record, at, &metrics) {
            sink.emit(&record)?;
        }
    }
    for secret in out.secrets.drain(..) {
        sink.learn(&secret);
    }
    out.clear();
    Ok(())
}

pub fn run(args: ReplayArgs) -> anyhow::Result<Replayed> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let reader = Reader::open(&args.file)?;
    let mut sink = crate::run::open_sink(args.format, args.output.as_ref())?;
    replay(&args.file, reader, &config, &mut sink)
}

/// A buffer the sink writes into (for readers of a recording that want its JSON lines).
#[derive(Clone, Default)]
struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A recording replayed with the default configuration, as the JSON lines `run` would have
/// written (for `report` and `pins`).
pub fn json_lines(file: &Path) -> anyhow::Result<Vec<u8>> {
    let reader = Reader::open(file)?;
    let buffer = Shared::default();
    let mut sink = Sink::new(Format::Json, Box::new(buffer.clone()));
    replay(file, reader, &Config::default(), &mut sink)?;
    drop(sink);
    let bytes = std::mem::take(&mut *buffer.0.lock().expect("buffer lock"));
    Ok(bytes)
}

fn replay(
    file: &Path,
    mut reader: Reader<std::io::BufReader<std::fs::File>>,
    config: &Config,
    sink: &mut Sink,
) -> anyhow::Result<Replayed> {
    let header = reader.header().clone();
    let mut statuses = Vec::new();
    let (mut analyzer, _) = crate::run::analysis(config, header.include_loopback, &mut statuses)?;
    let suppressions = crate::run::suppressions(config, sink)?;
    let mut tally = Tally::new(suppressions);
    for status in statuses {
        sink.emit(&Record::Status(status))?;
    }
    let mut message = format!(
        "replaying {}: recorded by egress-monitor {} on {} from {}, mode {}",
        file.display(),
        header.agent_version,
        header.host,
        header.started,
        header.mode
    );
    if header.dropped_records > 0 {
        message.push_str(&format!(
            "; the oldest {} inputs ({} segments) were dropped by --record-max-size: what they \
             opened before is not judged",
            header.dropped_records, header.dropped_segments
        ));
    }
    sink.emit(&Record::Status(Status::new(
        StatusKind::Recording,
        Some("replay".into()),
        message,
    )))?;

    let started = Instant::now();
    let mut out = Out::default();
    let mut inputs = 0u64;
    while let Some(input) = reader.next_input() {
        analyzer.apply(&input, &mut out);
        if let Input::LiveDrops(drops) = &input {
            // Where the live run said so: what it did not see from here back.
            let mut status = Status::new(
                StatusKind::Drops,
                Some("recorded run".into()),
                "the recorded run dropped events (kernel maps, ring buffer or its event loop): \
                 what they carried is not in the recording",
            );
            status.totals = Some(Totals {
                drops: recorded_drops(drops),
                targets: analyzer.processes().len(),
                ..tally.totals.clone()
            });
            sink.emit(&Record::Status(status))?;
        }
        inputs += 1;
        if !out.records.is_empty() || !out.secrets.is_empty() {
            emit(sink, &mut tally, &mut out)?;
        } else {
            out.clear();
        }
    }
    analyzer.finish(&mut out);
    emit(sink, &mut tally, &mut out)?;
    let seconds = started.elapsed().as_secs_f64();

    if let Some(damage) = &reader.damage {
        sink.emit(&Record::Status(Status::new(
            StatusKind::Warning,
            Some("replay".into()),
            format!("the recording ends early: {damage}; everything before it was replayed"),
        )))?;
    }
    if reader.undecodable > 0 {
        sink.emit(&Record::Status(Status::new(
            StatusKind::Warning,
            Some("replay".into()),
            format!(
                "{} recorded inputs could not be read and were skipped",
                reader.undecodable
            ),
        )))?;
    }
    // The analysis' own drops again, plus what the live run dropped before analysing.
    let mut all_drops = recorded_drops(analyzer.live_drops());
    for (reason, n) in analyzer.drops().iter() {
        *all_drops.entry(reason).or_default() += n;
    }
    let drops: u64 = all_drops.values().sum();
    sink.summary(&tally.summary, tally.summary_more, drops)?;
    let rate = if seconds > 0.0 {
        inputs as f64 / seconds
    } else {
        0.0
    };
    let mut status = Status::new(
        StatusKind::Shutdown,
        None,
        format!("replayed {inputs} inputs in {seconds:.3} s ({rate:.0} per second)"),
    );
    let mut totals = tally.totals.clone();
    totals.drops = all_drops;
    totals.targets = analyzer.processes().len();
    status.totals = Some(totals);
    sink.emit(&Record::Status(status))?;
    sink.flush()?;
    Ok(Replayed { inputs, seconds })
}

/// Drop reasons a recording may name (the kernel's, the live loop's), as the totals' keys; a
/// name this version does not know (a newer agent's) is counted under `recorded_other`.
fn recorded_drops(drops: &BTreeMap<String, u64>) -> BTreeMap<&'static str, u64> {
    const LOOP: [&str; 3] = ["waiting_full", "unowned_records", "waiting_at_shutdown"];
    let mut out = BTreeMap::new();
    for (name, n) in drops {
        let known = monitor_common::Drop::ALL
            .iter()
            .map(|d| d.name())
            .chain(LOOP)
            .find(|k| k == name);
        *out.entry(known.unwrap_or("recorded_other")).or_default() += n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_drop_reasons_map_to_known_names_or_other() {
        let recorded: BTreeMap<String, u64> = [
            ("sockets_full", 48),
            ("unowned_records", 1),
            ("from_a_newer_agent", 2),
            ("another_new_one", 3),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let drops = recorded_drops(&recorded);
        assert_eq!(drops.get("sockets_full"), Some(&48));
        assert_eq!(drops.get("unowned_records"), Some(&1));
        assert_eq!(drops.get("recorded_other"), Some(&5));
        assert_eq!(drops.len(), 3);
    }
}
