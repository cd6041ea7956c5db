//! Recordings (`run --record FILE`): every input the analysis consumed, so that `replay` runs
//! the same analysis again later, with another configuration if wanted.
//!
//! What is in a recording is [`Input`]: kernel records as decoded, what /proc said about each
//! process (as the analysis saw it: command lines already redacted), library names, peer
//! certificates, and, instead of the bytes a connection carried, what the detectors decided
//! about them ([`crate::analyze::Observed`], whose credentials have kinds, lengths and keyed
//! fingerprints but no values). On top of that every record passes a scrubber that knows every
//! secret the run has seen, as the output does.
//!
//! # Format (version 1)
//! ```text
//! "EMREC\n" magic, u16 LE version,
//! u32 LE length + a JSON header (Header),
//! blocks: u32 LE raw length, u32 LE compressed length, u32 LE records, u8 flags,
//!         LZ4 block (lz4_flex) of the records, each a LEB128 length + postcard(Input).
//! ```
//! A block with flag [`SEGMENT`] starts a segment: it begins with a snapshot of the processes
//! watched at that moment, so a recording whose oldest segments were dropped
//! (`--record-max-size`) still replays from its first remaining block. Dropping rewrites the
//! file without its oldest segments (a new file renamed over the old one) with the drop counts
//! in its header.
mod reader;
pub mod synthetic;
mod writer;

pub use reader::Reader;
pub use writer::Writer;

use serde::{Deserialize, Serialize};

pub const MAGIC: &[u8; 6] = b"EMREC\n";
pub const VERSION: u16 = 1;
/// Block flag: the block starts a segment (its first records are a process snapshot).
pub const SEGMENT: u8 = 1;
/// Records are collected into blocks of about this many uncompressed bytes.
pub const BLOCK_BYTES: usize = 256 * 1024;
/// A block larger than this is corrupt (it would not have been written).
pub const MAX_BLOCK_BYTES: usize = 64 * 1024 * 1024;

/// The recording's header: what a replay needs to know about the run that wrote it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// `egress-monitor` version that wrote it.
    pub agent_version: String,
    /// Host name of the machine.
    pub host: String,
    /// RFC 3339 start of the run.
    pub started: String,
    /// The run's mode (`--mcp`, `--pid 42`, ...).
    pub mode: String,
    /// `--include-loopback`.
    pub include_loopback: bool,
    /// `--record-max-size`, when given.
    pub max_size: Option<u64>,
    /// Records dropped (oldest first) to keep the file under `max_size`.
    pub dropped_records: u64,
    /// Segments dropped.
    pub dropped_segments: u64,
}

/// Whether the file starts like a recording (for commands that take either a recording or
/// JSON lines).
pub fn is_recording(path: &std::path::Path) -> bool {
    use std::io::Read as _;
    let mut magic = [0u8; 6];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == MAGIC
}

#[cfg(test)]
mod tests;

/// This machine's host name (for the header: which host a recording came from).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
