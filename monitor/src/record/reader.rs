//! Reading a recording back, block by block. A recording is input from anywhere (a file handed
//! over for an investigation), so every length is checked before it is trusted and a damaged
//! file stops with a message naming the block, never a panic.
use std::{
    fs::File,
    io::{self, BufReader, Read},
    path::Path,
};

use anyhow::{bail, Context as _};

use super::{Header, MAGIC, MAX_BLOCK_BYTES, SEGMENT, VERSION};
use crate::analyze::input::Input;

pub struct Reader<R> {
    inner: R,
    header: Header,
    /// The current block, uncompressed, and where the next record starts in it.
    raw: Vec<u8>,
    at: usize,
    compressed: Vec<u8>,
    /// Blocks read so far.
    blocks: u64,
    /// Records that could not be decoded (skipped).
    pub undecodable: u64,
    /// Why reading stopped early, if it did (a damaged or truncated file).
    pub damage: Option<String>,
}

impl Reader<BufReader<File>> {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        Reader::new(BufReader::with_capacity(1 << 20, file))
            .with_context(|| format!("{} is not a readable recording", path.display()))
    }
}

/// `Ok(false)` at a clean end of input (no byte of `buf` read).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn varint(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut n: usize = 0;
    for (i, &b) in bytes.iter().enumerate().take(5) {
        n |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((n, i + 1));
        }
    }
    None
}

impl<R: Read> Reader<R> {
    pub fn new(mut inner: R) -> anyhow::Result<Self> {
        let mut head = [0u8; 12];
        if !read_full(&mut inner, &mut head)? || &head[..6] != MAGIC {
            bail!("it does not start with an egress-monitor recording header");
        }
        let version = u16::from_le_bytes([head[6], head[7]]);
        if version != VERSION {
            bail!(
                "recording format version {version}; this egress-monitor reads version {VERSION}"
            );
        }
        let len = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) as usize;
        if len > 1 << 20 {
            bail!("header of {len} bytes: damaged");
        }
        let mut json = vec![0u8; len];
        if !read_full(&mut inner, &mut json)? {
            bail!("truncated header");
        }
        let header: Header = serde_json::from_slice(&json).context("damaged header")?;
        Ok(Self {
            inner,
            header,
            raw: Vec::new(),
            at: 0,
            compressed: Vec::new(),
            blocks: 0,
            undecodable: 0,
            damage: None,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The next block into `raw`; `false` at the end (or at damage, noted in `damage`).
    fn next_block(&mut self) -> bool {
        let mut head = [0u8; 13];
        let block = self.blocks + 1;
        match read_full(&mut self.inner, &mut head) {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                self.damage = Some(format!(
                    "block {block}: {e} (the run that wrote it did not stop cleanly?)"
                ));
                return false;
            }
        }
        let raw_len = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes")) as usize;
        let len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
        if raw_len > MAX_BLOCK_BYTES || len > MAX_BLOCK_BYTES || head[12] & !SEGMENT != 0 {
            self.damage = Some(format!("block {block}: damaged block header"));
            return false;
        }
        self.compressed.resize(len, 0);
        if let Err(e) = read_full(&mut self.inner, &mut self.compressed).and_then(|full| {
            full.then_some(())
                .ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
        }) {
            self.damage = Some(format!(
                "block {block}: {e} (the run that wrote it did not stop cleanly?)"
            ));
            return false;
        }
        self.raw.resize(raw_len, 0);
        match lz4_flex::block::decompress_into(&self.compressed, &mut self.raw) {
            Ok(n) if n == raw_len => {}
            Ok(_) | Err(_) => {
                self.damage = Some(format!("block {block}: damaged compressed data"));
                return false;
            }
        }
        self.at = 0;
        self.blocks += 1;
        true
    }

    /// The next input; `None` at the end of the recording (see `damage` for why, if early).
    pub fn next_input(&mut self) -> Option<Input> {
        loop {
            while self.at >= self.raw.len() {
                if self.damage.is_some() || !self.next_block() {
                    return None;
                }
            }
            let Some((len, n)) = varint(&self.raw[self.at..]) else {
                self.damage = Some(format!("block {}: damaged record length", self.blocks));
                return None;
            };
            let start = self.at + n;
            let Some(bytes) = self.raw.get(start..start.saturating_add(len)) else {
                self.damage = Some(format!(
                    "block {}: record past the block's end",
                    self.blocks
                ));
                return None;
            };
            self.at = start + len;
            match postcard::from_bytes::<Input>(bytes) {
                Ok(input) => return Some(input),
                Err(_) => self.undecodable += 1,
            }
        }
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Input;

    fn next(&mut self) -> Option<Input> {
        self.next_input()
    }
}
