//! Go's function table (`.gopclntab`): where each function of a Go binary starts and ends. The
//! linker writes it into every Go binary for stack traces and the garbage collector, so it
//! survives `-ldflags "-s -w"` (which drops the symbol table and DWARF), and no debug
//! information is needed to find a function.
//!
//! Formats read (from Go's `runtime/symtab.go` and `debug/gosym/pclntab.go`), for 64-bit
//! little-endian binaries: the header of Go 1.18 and 1.19 (magic `0xfffffff0`) and of Go 1.20
//! and later (`0xfffffff1`, the same layout):
//!
//! ```text
//! magic u32 | pad u8, pad u8 | minLC u8 | ptrSize u8
//! nfunc, nfiles, textStart, funcnameOffset, cuOffset, filetabOffset, pctabOffset, pclnOffset
//!                                                    (ptrSize words; offsets from the header)
//! at pclnOffset: nfunc x {entryoff u32, funcoff u32}, then the end's entryoff u32
//! at pclnOffset + funcoff: _func {entryOff u32, nameOff i32, ...}
//! at funcnameOffset + nameOff: the NUL-terminated name
//! ```
//!
//! Entry offsets count from `textStart`, the address of `runtime.text`. Older formats (Go 1.2 to
//! 1.17) are recognised and refused with their version range. Everything is bounds-checked: a
//! truncated or corrupt table is an error naming what is wrong, never a panic.
use std::fmt;

/// Go 1.18 and 1.19.
const MAGIC_118: u32 = 0xffff_fff0;
/// Go 1.20 and later.
const MAGIC_120: u32 = 0xffff_fff1;
/// Go 1.16 and 1.17.
const MAGIC_116: u32 = 0xffff_fffa;
/// Go 1.2 to 1.15.
const MAGIC_12: u32 = 0xffff_fffb;

const HEADER_WORDS: usize = 8;
const HEADER_LEN: usize = 8 + HEADER_WORDS * 8;
/// Longest function name compared (Go's longest real names are a few hundred bytes).
const MAX_NAME: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PclntabError {
    /// Fewer bytes than the header (or a table it announces) needs.
    Truncated {
        what: &'static str,
        need: u64,
        have: usize,
    },
    /// Not a Go function table at all.
    UnknownMagic(u32),
    /// A Go function table of a format not read here.
    Unsupported { magic: u32, go: &'static str },
    /// A header field that no Go linker writes.
    BadHeader(String),
}

impl fmt::Display for PclntabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PclntabError::Truncated { what, need, have } => write!(
                f,
                "truncated .gopclntab: the {what} needs {need} bytes, the section has {have}"
            ),
            PclntabError::UnknownMagic(m) => {
                write!(f, "not a Go function table (magic {m:#010x})")
            }
            PclntabError::Unsupported { magic, go } => write!(
                f,
                "function table of {go} (magic {magic:#010x}): only Go 1.18 and later are read"
            ),
            PclntabError::BadHeader(why) => write!(f, "corrupt .gopclntab header: {why}"),
        }
    }
}

impl std::error::Error for PclntabError {}

/// A function's code: `[entry, end)`, as virtual addresses of the binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    pub entry: u64,
    pub end: u64,
}

/// A parsed `.gopclntab` header, borrowing the section's bytes.
#[derive(Debug)]
pub struct Pclntab<'a> {
    data: &'a [u8],
    /// `0xfffffff0` or `0xfffffff1`.
    pub magic: u32,
    nfunc: usize,
    /// `runtime.text` as written in the file (0 when left to a dynamic relocation).
    pub text_start: u64,
    funcnames: usize,
    pcln: usize,
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    let bytes = data.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

impl<'a> Pclntab<'a> {
    /// Read the header and check that the function table it announces fits in `data`.
    pub fn parse(data: &'a [u8]) -> Result<Self, PclntabError> {
        let truncated = |what, need: u64| PclntabError::Truncated {
            what,
            need,
            have: data.len(),
        };
        let magic = u32_at(data, 0).ok_or(truncated("header", HEADER_LEN as u64))?;
        match magic {
            MAGIC_118 | MAGIC_120 => {}
            MAGIC_116 => {
                return Err(PclntabError::Unsupported {
                    magic,
                    go: "Go 1.16 or 1.17",
                })
            }
            MAGIC_12 => {
                return Err(PclntabError::Unsupported {
                    magic,
                    go: "Go 1.2 to 1.15",
                })
            }
            other => return Err(PclntabError::UnknownMagic(other)),
        }
        if data.len() < HEADER_LEN {
            return Err(truncated("header", HEADER_LEN as u64));
        }
        let (pad, min_lc, ptr_size) = (&data[4..6], data[6], data[7]);
        if pad != [0, 0] {
            return Err(PclntabError::BadHeader(format!(
                "padding bytes {pad:02x?} are not zero"
            )));
        }
        if ptr_size != 8 {
            return Err(PclntabError::BadHeader(format!(
                "pointer size {ptr_size}: only 64-bit binaries are read"
            )));
        }
        if !matches!(min_lc, 1 | 2 | 4) {
            return Err(PclntabError::BadHeader(format!(
                "instruction size quantum {min_lc}"
            )));
        }
        let word = |i: usize| u64_at(data, 8 + i * 8).expect("header length checked");
        let (nfunc, text_start, funcnames, pcln) = (word(0), word(2), word(3), word(7));
        let len = data.len() as u64;
        for (name, offset) in [("funcnameOffset", funcnames), ("pclnOffset", pcln)] {
            if offset < HEADER_LEN as u64 || offset >= len {
                return Err(PclntabError::BadHeader(format!(
                    "{name} {offset:#x} is outside the section ({len:#x} bytes)"
                )));
            }
        }
        // nfunc entry pairs and the end's entry offset, 4 bytes each.
        let table = nfunc
            .checked_mul(8)
            .and_then(|n| n.checked_add(4))
            .and_then(|n| n.checked_add(pcln))
            .ok_or_else(|| PclntabError::BadHeader(format!("{nfunc} functions")))?;
        if table > len {
            return Err(truncated("function table", table));
        }
        Ok(Self {
            data,
            magic,
            nfunc: nfunc as usize,
            text_start,
            funcnames: funcnames as usize,
            pcln: pcln as usize,
        })
    }

    /// How many functions the table lists.
    pub fn len(&self) -> usize {
        self.nfunc
    }

    pub fn is_empty(&self) -> bool {
        self.nfunc == 0
    }

    /// The name of function `i`, `None` when its record or name is out of bounds.
    fn name(&self, i: usize) -> Option<&'a [u8]> {
        let funcoff = u32_at(self.data, self.pcln + i * 8 + 4)? as usize;
        let func = self.pcln.checked_add(funcoff)?;
        let name_off = u32_at(self.data, func.checked_add(4)?)? as i32;
        let start = self
            .funcnames
            .checked_add(usize::try_from(name_off).ok()?)?;
        let rest = self.data.get(start..)?;
        let rest = &rest[..rest.len().min(MAX_NAME)];
        let end = rest.iter().position(|&b| b == 0)?;
        Some(&rest[..end])
    }

    /// Function `i`'s code as offsets from `textStart`: its entry and the next one's.
    fn range(&self, i: usize) -> Option<(u64, u64)> {
        let entry = u32_at(self.data, self.pcln + i * 8)?;
        let end = u32_at(self.data, self.pcln + (i + 1) * 8)?;
        (end > entry).then_some((entry as u64, end as u64))
    }

    /// The first function named `name`, as addresses relative to `textStart` (add the text
    /// start to get virtual addresses).
    pub fn find(&self, name: &str) -> Option<Function> {
        (0..self.nfunc)
            .find(|&i| self.name(i) == Some(name.as_bytes()))
            .and_then(|i| self.range(i))
            .map(|(entry, end)| Function { entry, end })
    }

    /// Every function name and range, in table order (for tests and diagnostics).
    pub fn functions(&self) -> impl Iterator<Item = (String, Function)> + '_ {
        (0..self.nfunc).filter_map(|i| {
            let name = String::from_utf8_lossy(self.name(i)?).into_owned();
            let (entry, end) = self.range(i)?;
            Some((name, Function { entry, end }))
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A function table as the Go 1.18+ linker lays it out, with these functions (name, size).
    pub fn table(magic: u32, text_start: u64, funcs: &[(&str, u32)]) -> Vec<u8> {
        let mut names = Vec::new();
        let mut name_offs = Vec::new();
        for (name, _) in funcs {
            name_offs.push(names.len() as u32);
            names.extend_from_slice(name.as_bytes());
            names.push(0);
        }
        let funcnames = HEADER_LEN as u64;
        let pcln = funcnames + names.len() as u64;
        // functab, then the _func records (entryOff, nameOff and some padding each).
        let ftab_len = funcs.len() * 8 + 4;
        let mut ftab = Vec::new();
        let mut records = Vec::new();
        let mut entry = 0u32;
        for (i, (_, size)) in funcs.iter().enumerate() {
            let funcoff = (ftab_len + records.len()) as u32;
            ftab.extend_from_slice(&entry.to_le_bytes());
            ftab.extend_from_slice(&funcoff.to_le_bytes());
            records.extend_from_slice(&entry.to_le_bytes());
            records.extend_from_slice(&name_offs[i].to_le_bytes());
            records.extend_from_slice(&[0u8; 8]);
            entry += size;
        }
        ftab.extend_from_slice(&entry.to_le_bytes());
        let mut data = magic.to_le_bytes().to_vec();
        data.extend_from_slice(&[0, 0, 1, 8]);
        for word in [
            funcs.len() as u64,
            1,
            text_start,
            funcnames,
            pcln,
            pcln,
            pcln,
            pcln,
        ] {
            data.extend_from_slice(&word.to_le_bytes());
        }
        data.extend_from_slice(&names);
        data.extend_from_slice(&ftab);
        data.extend_from_slice(&records);
        data
    }

    const FUNCS: &[(&str, u32)] = &[
        ("runtime.text", 0x20),
        ("crypto/x509.(*Certificate).Verify", 0x400),
        ("crypto/tls.(*Conn).verifyServerCertificate", 0x900),
        ("main.main", 0x80),
    ];

    #[test]
    fn finds_functions_and_their_ends() {
        for magic in [MAGIC_118, MAGIC_120] {
            let data = table(magic, 0x40_1000, FUNCS);
            let t = Pclntab::parse(&data).unwrap();
            assert_eq!((t.len(), t.text_start, t.magic), (4, 0x40_1000, magic));
            assert_eq!(
                t.find("crypto/tls.(*Conn).verifyServerCertificate"),
                Some(Function {
                    entry: 0x420,
                    end: 0xd20
                })
            );
            assert_eq!(
                t.find("main.main"),
                Some(Function {
                    entry: 0xd20,
                    end: 0xda0
                })
            );
            assert_eq!(t.find("crypto/tls.(*Conn).verifyServer"), None);
            assert_eq!(t.find("no.such"), None);
            assert_eq!(t.functions().count(), 4);
        }
    }

    #[test]
    fn older_formats_are_named() {
        for (magic, go) in [(MAGIC_116, "1.16 or 1.17"), (MAGIC_12, "1.2 to 1.15")] {
            let data = table(magic, 0, FUNCS);
            let err = Pclntab::parse(&data).unwrap_err();
            assert!(matches!(err, PclntabError::Unsupported { .. }));
            assert!(err.to_string().contains(go), "{err}");
        }
        let err = Pclntab::parse(b"\x7fELF\x02\x01\x01\0 not a table at all").unwrap_err();
        assert_eq!(err, PclntabError::UnknownMagic(0x464c_457f));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let data = table(MAGIC_120, 0x40_1000, FUNCS);
        // Any prefix short of the function table fails the header checks; longer prefixes may
        // parse but never read out of bounds.
        for len in 0..data.len() {
            match Pclntab::parse(&data[..len]) {
                Ok(t) => {
                    let _ = t.find("main.main");
                    let _ = t.functions().count();
                }
                Err(err) => assert!(!err.to_string().is_empty()),
            }
        }
        let err = Pclntab::parse(&data[..40]).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        let pcln = u64_at(&data, 8 + 7 * 8).unwrap() as usize;
        let table_end = pcln + FUNCS.len() * 8 + 4;
        assert!(matches!(
            Pclntab::parse(&data[..table_end - 1]),
            Err(PclntabError::Truncated {
                what: "function table",
                ..
            })
        ));
    }

    #[test]
    fn corrupt_headers_are_errors() {
        let good = table(MAGIC_118, 0x40_1000, FUNCS);
        let patch = |at: usize, bytes: &[u8]| {
            let mut d = good.clone();
            d[at..at + bytes.len()].copy_from_slice(bytes);
            Pclntab::parse(&d).unwrap_err().to_string()
        };
        assert!(patch(7, &[4]).contains("pointer size 4"));
        assert!(patch(4, &[1]).contains("padding"));
        assert!(patch(6, &[3]).contains("quantum"));
        // nfunc so large the table would overflow, or run past the end.
        assert!(!patch(8, &u64::MAX.to_le_bytes()).is_empty());
        assert!(patch(8, &1_000_000u64.to_le_bytes()).contains("truncated"));
        // Offsets outside the section.
        assert!(patch(8 + 3 * 8, &u64::MAX.to_le_bytes()).contains("funcnameOffset"));
        assert!(patch(8 + 7 * 8, &3u64.to_le_bytes()).contains("pclnOffset"));
    }

    #[test]
    fn garbage_records_are_skipped() {
        let mut data = table(MAGIC_120, 0x40_1000, FUNCS);
        // Point every function's record far outside the section.
        let pcln = u64_at(&data, 8 + 7 * 8).unwrap() as usize;
        for i in 0..FUNCS.len() {
            data[pcln + i * 8 + 4..pcln + i * 8 + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        }
        let t = Pclntab::parse(&data).unwrap();
        assert_eq!(t.find("main.main"), None);
        assert_eq!(t.functions().count(), 0);
        // Random bytes after a valid magic and layout.
        let mut noise = MAGIC_120.to_le_bytes().to_vec();
        noise.extend_from_slice(&[0, 0, 1, 8]);
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..4096 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.push(x as u8);
        }
        for len in [8, 72, 100, 4100] {
            if let Ok(t) = Pclntab::parse(&noise[..len]) {
                let _ = t.functions().count();
            }
        }
    }
}
