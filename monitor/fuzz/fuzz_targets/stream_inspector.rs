//! Feeds arbitrary bytes to `StreamInspector` as a sequence of writes. The first input bytes
//! choose how the rest is cut into writes and which writes were captured only in part, so the
//! fuzzer explores write boundaries and truncation as well as content.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor::detect::redact::Fingerprinter;
use monitor::detect::{DetectConfig, StreamInspector, MAX_INSPECTED};

fuzz_target!(|data: &[u8]| {
    let Some((&plan, mut rest)) = data.split_first() else {
        return;
    };
    let fp = Fingerprinter::new([7; 32]);
    let cfg = DetectConfig::default();
    let mut inspector = StreamInspector::new();
    let mut decided = false;
    // Write sizes cycle through 1..=64 scaled by the plan byte; every 8th write may be partial.
    let mut step = usize::from(plan);
    while !rest.is_empty() {
        step = step.wrapping_mul(31).wrapping_add(7);
        let size = (1 + step % 64) * (1 + usize::from(plan >> 6));
        let (write, after) = rest.split_at(size.min(rest.len()));
        rest = after;
        let complete = plan & 1 == 0 || step % 8 != 0;
        let verdict = inspector.feed(write, complete, &cfg, &fp);
        assert!(inspector.buffer_capacity() <= MAX_INSPECTED);
        if verdict.is_some() {
            assert!(!decided, "verdict returned twice");
            decided = true;
        }
    }
    let last = inspector.finish(&cfg, &fp);
    assert!(!(decided && last.is_some()), "verdict returned twice");
});
