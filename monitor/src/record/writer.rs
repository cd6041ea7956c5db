//! Writing a recording: records into blocks, blocks into segments, old segments out when the
//! file would outgrow `--record-max-size`.
use std::{
    collections::VecDeque,
    fs::File,
    io::{self, Read as _, Seek as _, SeekFrom, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use super::{Header, BLOCK_BYTES, MAGIC, SEGMENT, VERSION};
use crate::{analyze::input::Input, detect::secret::Secret, output::scrub::Scrubber};

/// Where a segment's blocks are in the file.
#[derive(Clone, Copy, Debug)]
struct Segment {
    offset: u64,
    len: u64,
    records: u64,
}

pub struct Writer {
    path: PathBuf,
    file: File,
    header: Header,
    /// Uncompressed records of the block being filled.
    block: Vec<u8>,
    block_records: u32,
    /// The next block written starts a segment.
    next_flags: u8,
    scratch: Vec<u8>,
    scrubber: Scrubber,
    segments: VecDeque<Segment>,
    file_len: u64,
    /// A new segment is started when the current one reaches this size (a quarter of the
    /// maximum), so dropping the oldest keeps most of the bound's worth of history.
    segment_target: u64,
    /// Records written, all told.
    records: u64,
}

fn open_new(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .read(true)
        .mode(0o600)
        .open(path)
}

fn header_bytes(header: &Header) -> io::Result<Vec<u8>> {
    let json = serde_json::to_vec(header).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(json.len() + 12);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}

/// LEB128, as postcard writes lengths.
fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

impl Writer {
    /// A new recording at `path` (created 0600; an existing file is replaced).
    pub fn create(path: &Path, header: Header) -> io::Result<Self> {
        let mut file = open_new(path)?;
        let head = header_bytes(&header)?;
        file.write_all(&head)?;
        let segment_target = header.max_size.map_or(u64::MAX, |max| (max / 4).max(1));
        Ok(Self {
            path: path.to_path_buf(),
            file,
            header,
            block: Vec::with_capacity(BLOCK_BYTES + 4096),
            block_records: 0,
            next_flags: SEGMENT,
            scratch: Vec::with_capacity(1024),
            scrubber: Scrubber::default(),
            segments: VecDeque::new(),
            file_len: head.len() as u64,
            segment_target,
            records: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Never write this secret (in any of its encodings).
    pub fn learn(&mut self, secret: &Secret) {
        self.scrubber.learn(secret);
    }

    /// Records written so far, and records dropped to stay under the bound.
    pub fn counts(&self) -> (u64, u64) {
        (self.records, self.header.dropped_records)
    }

    /// Bytes the file holds now (blocks still being filled are not in it yet).
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    pub fn write(&mut self, input: &Input) -> io::Result<()> {
        self.scratch.clear();
        let scratch = std::mem::take(&mut self.scratch);
        let mut scratch = postcard::to_extend(input, scratch).map_err(io::Error::other)?;
        self.scrubber.scrub_in_place(&mut scratch);
        put_varint(&mut self.block, scratch.len());
        self.block.extend_from_slice(&scratch);
        self.scratch = scratch;
        self.block_records += 1;
        self.records += 1;
        if self.block.len() >= BLOCK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Write the block being filled (if any) to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.block_records == 0 {
            return Ok(());
        }
        let compressed = lz4_flex::block::compress(&self.block);
        let mut head = [0u8; 13];
        head[0..4].copy_from_slice(&(self.block.len() as u32).to_le_bytes());
        head[4..8].copy_from_slice(&(compressed.len() as u32).to_le_bytes());
        head[8..12].copy_from_slice(&self.block_records.to_le_bytes());
        head[12] = self.next_flags;
        self.file.write_all(&head)?;
        self.file.write_all(&compressed)?;
        let len = (head.len() + compressed.len()) as u64;
        if self.next_flags & SEGMENT != 0 || self.segments.is_empty() {
            self.segments.push_back(Segment {
                offset: self.file_len,
                len: 0,
                records: 0,
            });
        }
        let segment = self.segments.back_mut().expect("pushed above");
        segment.len += len;
        segment.records += u64::from(self.block_records);
        self.file_len += len;
        self.next_flags = 0;
        self.block.clear();
        self.block_records = 0;
        Ok(())
    }

    /// With `--record-max-size`: whether the current segment is full (the caller then starts
    /// a new one with [`Writer::start_segment`]).
    pub fn wants_segment(&self) -> bool {
        self.segments
            .back()
            .is_some_and(|s| s.len >= self.segment_target)
    }

    /// Start a new segment with `snapshot` (what a replay starting here needs to know), then
    /// drop the oldest segments if the file outgrew its bound. Returns the records dropped now.
    pub fn start_segment(&mut self, snapshot: impl IntoIterator<Item = Input>) -> io::Result<u64> {
        self.flush()?;
        self.next_flags = SEGMENT;
        for input in snapshot {
            self.write(&input)?;
        }
        self.flush()?;
        match self.header.max_size {
            Some(max) if self.file_len > max => self.compact(max),
            _ => Ok(0),
        }
    }

    /// Rewrite the file without its oldest segments: keep the newest ones that fit in half the
    /// bound (always the current one).
    fn compact(&mut self, max: u64) -> io::Result<u64> {
        let mut keep = 0;
        let mut kept_len = 0;
        for segment in self.segments.iter().rev() {
            if keep > 0 && kept_len + segment.len > max / 2 {
                break;
            }
            keep += 1;
            kept_len += segment.len;
        }
        let drop = self.segments.len() - keep;
        if drop == 0 {
            return Ok(0);
        }
        let dropped: u64 = self.segments.iter().take(drop).map(|s| s.records).sum();
        self.header.dropped_records += dropped;
        self.header.dropped_segments += drop as u64;
        let tmp = self.path.with_extension("recording-tmp");
        let mut new = open_new(&tmp)?;
        let head = header_bytes(&self.header)?;
        new.write_all(&head)?;
        let mut offset = head.len() as u64;
        let mut buffer = vec![0u8; 1 << 20];
        let kept: Vec<Segment> = self.segments.iter().skip(drop).copied().collect();
        self.segments.clear();
        for segment in kept {
            self.file.seek(SeekFrom::Start(segment.offset))?;
            let mut left = segment.len;
            while left > 0 {
                let n = left.min(buffer.len() as u64) as usize;
                self.file.read_exact(&mut buffer[..n])?;
                new.write_all(&buffer[..n])?;
                left -= n as u64;
            }
            self.segments.push_back(Segment { offset, ..segment });
            offset += segment.len;
        }
        std::fs::rename(&tmp, &self.path)?;
        self.file = new;
        self.file_len = offset;
        Ok(dropped)
    }

    /// The last block out, and the file's data on disk.
    pub fn finish(&mut self) -> io::Result<()> {
        self.flush()?;
        self.file.sync_data()
    }
}
