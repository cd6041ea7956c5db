use std::sync::Arc;

use super::*;
use crate::{
    analyze::{
        input::{Input, Time},
        processes::ProcessKey,
    },
    detect::secret::Secret,
    process::ProcessInfo,
};

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("em-record-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    dir
}

fn process(pid: u32, cmdline: &str) -> Input {
    Input::AddProcess {
        key: ProcessKey::new(pid, 7),
        info: Arc::new(ProcessInfo {
            pid,
            comm: "node".into(),
            cmdline: vec![cmdline.into()],
            ..ProcessInfo::default()
        }),
        time: Time(1_000 + u64::from(pid)),
    }
}

fn read_all(path: &std::path::Path) -> (Header, Vec<Input>, Option<String>) {
    let mut r = Reader::open(path).unwrap();
    let inputs: Vec<Input> = r.by_ref().collect();
    (r.header().clone(), inputs, r.damage.clone())
}

#[test]
fn inputs_come_back_in_order() {
    let path = tmp("order");
    let mut w = Writer::create(&path, Header::default()).unwrap();
    for pid in 0..5000 {
        w.write(&process(pid, "server.js")).unwrap();
    }
    w.finish().unwrap();
    let (header, inputs, damage) = read_all(&path);
    assert_eq!(header, Header::default());
    assert_eq!(damage, None);
    assert_eq!(inputs.len(), 5000);
    for (pid, input) in inputs.iter().enumerate() {
        match input {
            Input::AddProcess { key, info, .. } => {
                assert_eq!(key.pid, pid as u32);
                assert_eq!(info.cmdline, vec!["server.js".to_string()]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn learned_secrets_never_reach_the_file() {
    let path = tmp("secret");
    let mut w = Writer::create(&path, Header::default()).unwrap();
    let secret = "sk-live-0123456789abcdefXYZ";
    w.learn(&Secret::new(secret.as_bytes()));
    w.write(&process(1, &format!("--token={secret}"))).unwrap();
    w.finish().unwrap();
    let raw = std::fs::read(&path).unwrap();
    assert!(!raw.windows(secret.len()).any(|w| w == secret.as_bytes()));
    let (_, inputs, _) = read_all(&path);
    let Input::AddProcess { info, .. } = &inputs[0] else {
        panic!("{:?}", inputs[0])
    };
    assert_eq!(
        info.cmdline[0],
        format!("--token={}", "*".repeat(secret.len()))
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn the_bound_drops_the_oldest_segments_and_counts_them() {
    let path = tmp("bound");
    let max = 256 * 1024;
    let header = Header {
        max_size: Some(max),
        ..Header::default()
    };
    let mut w = Writer::create(&path, header).unwrap();
    let mut dropped = 0;
    // Incompressible-ish command lines, so segments fill up.
    for pid in 0..40_000u32 {
        let line = format!(
            "{:x}",
            u64::from(pid).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5555
        );
        w.write(&process(pid, &line)).unwrap();
        if pid % 500 == 0 {
            w.flush().unwrap();
            if w.wants_segment() {
                dropped += w.start_segment([process(99_999, "snapshot")]).unwrap();
            }
        }
    }
    w.finish().unwrap();
    assert!(dropped > 0, "nothing dropped");
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len <= max + 64 * 1024, "file of {len} bytes over the bound");
    let (header, inputs, damage) = read_all(&path);
    assert_eq!(damage, None);
    assert_eq!(header.dropped_records, dropped);
    assert!(header.dropped_segments > 0);
    // The remaining data starts with a segment snapshot and ends with the last input.
    assert!(matches!(&inputs[0], Input::AddProcess { key, .. } if key.pid == 99_999));
    assert!(matches!(inputs.last(), Some(Input::AddProcess { key, .. }) if key.pid == 39_999));
    let (written, counted) = w.counts();
    assert_eq!(counted, dropped);
    let snapshots = inputs
        .iter()
        .filter(|i| matches!(i, Input::AddProcess { key, .. } if key.pid == 99_999))
        .count() as u64;
    assert_eq!(
        inputs.len() as u64,
        written - dropped,
        "{snapshots} snapshots"
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn damage_stops_reading_with_a_message_not_a_panic() {
    let path = tmp("damage");
    let mut w = Writer::create(&path, Header::default()).unwrap();
    for pid in 0..3000 {
        w.write(&process(pid, "x")).unwrap();
        if pid == 1500 {
            w.flush().unwrap();
        }
    }
    w.finish().unwrap();
    let full = std::fs::read(&path).unwrap();
    // Every truncation: a clean prefix of the inputs, and a note when cut inside a block.
    for cut in (0..full.len()).step_by(211) {
        let r = Reader::new(&full[..cut]);
        let Ok(mut r) = r else { continue };
        let n = r.by_ref().count();
        assert!(n <= 3000);
        if n < 3000 {
            assert!(r.damage.is_some() || n == 0 || n == 1501, "cut {cut}: {n}");
        }
    }
    // Flipped bytes in the data: never a panic.
    for at in (40..full.len()).step_by(41) {
        let mut bad = full.clone();
        bad[at] ^= 0xa5;
        if let Ok(r) = Reader::new(&bad[..]) {
            let _ = r.count();
        }
    }
    assert!(Reader::new(&b"not a recording"[..]).is_err());
    let _ = std::fs::remove_file(&path);
}

#[test]
fn synthetic_recordings_replay_with_findings() {
    let path = tmp("synthetic");
    synthetic::write(&path, 20_000).unwrap();
    let (_, inputs, damage) = read_all(&path);
    assert_eq!(damage, None);
    assert!(inputs.len() >= 20_000);
    let _ = std::fs::remove_file(&path);
}
