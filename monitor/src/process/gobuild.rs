//! Go build information (`.go.buildinfo`): the Go version and the module list a binary was built
//! from. The linker writes it into every Go binary, stripped (`-s -w`) release builds included.
//!
//! Layout (Go 1.18 and later, the "inline" format, checked in `debug/buildinfo`): a 32-byte header
//! (`\xff Go buildinf:`, pointer size, flags with bit 1 set), then two varint-length-prefixed
//! strings: the Go version and the module info. The module info is framed by 16-byte sentinels
//! and holds tab-separated lines: `path`, `mod` (the main module), `dep` (each dependency) and
//! `=>` (the replacement of the line before). Older binaries (Go 1.17 and before: pointers
//! instead of inline strings) are not read: those Go releases are long out of support.

const MAGIC: &[u8] = b"\xff Go buildinf:";
const HEADER_LEN: usize = 32;
const FLAG_VERSION_INLINE: u8 = 0x2;
/// Module info larger than this is not a real binary's (a big one lists a few hundred modules).
const MAX_STRING: u64 = 1 << 20;

/// A module a binary was built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    pub path: String,
    pub version: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildInfo {
    /// `go1.22.3`.
    pub go_version: String,
    /// The main package's import path.
    pub main_path: String,
    /// The main module, then every dependency (with a replacement's version when replaced).
    pub modules: Vec<Module>,
}

fn uvarint(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in data.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

fn string(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, n) = uvarint(data)?;
    if len > MAX_STRING {
        return None;
    }
    let end = n.checked_add(len as usize)?;
    Some((data.get(n..end)?, data.get(end..)?))
}

/// Parse the contents of a `.go.buildinfo` section. `None` when it is not the inline format.
pub fn parse(section: &[u8]) -> Option<BuildInfo> {
    if !section.starts_with(MAGIC) || section.len() < HEADER_LEN {
        return None;
    }
    if section[MAGIC.len() + 1] & FLAG_VERSION_INLINE == 0 {
        return None;
    }
    let (version, rest) = string(&section[HEADER_LEN..])?;
    let (mut modinfo, _) = string(rest)?;
    // Sentinels: 16 bytes each side, the last line ending just before the closing one.
    if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        modinfo = &modinfo[16..modinfo.len() - 16];
    }
    let mut info = BuildInfo {
        go_version: String::from_utf8_lossy(version).into_owned(),
        ..Default::default()
    };
    for line in String::from_utf8_lossy(modinfo).lines() {
        let mut fields = line.split('\t');
        match (fields.next(), fields.next(), fields.next()) {
            (Some("path"), Some(path), _) => info.main_path = path.to_string(),
            (Some("mod" | "dep"), Some(path), version) => info.modules.push(Module {
                path: path.to_string(),
                version: version.unwrap_or("").to_string(),
            }),
            (Some("=>"), Some(_), Some(version)) => {
                if let Some(last) = info.modules.last_mut() {
                    last.version = version.to_string();
                }
            }
            _ => {}
        }
    }
    Some(info)
}

/// The build information of an ELF file, if it is a Go binary of a supported version.
pub fn of_elf(data: &[u8]) -> Option<BuildInfo> {
    use object::{Object, ObjectSection};
    let file = object::File::parse(data).ok()?;
    let section = file.section_by_name(".go.buildinfo")?;
    parse(section.data().ok()?)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A `.go.buildinfo` section as the Go linker writes it.
    pub fn section(version: &str, lines: &[&str]) -> Vec<u8> {
        let mut s = MAGIC.to_vec();
        s.push(8);
        s.push(FLAG_VERSION_INLINE);
        s.resize(HEADER_LEN, 0);
        let mut modinfo = vec![0x30u8; 16];
        for line in lines {
            modinfo.extend_from_slice(line.as_bytes());
            modinfo.push(b'\n');
        }
        modinfo.extend_from_slice(&[0xf9u8; 16]);
        for part in [version.as_bytes(), &modinfo[..]] {
            let mut len = part.len() as u64;
            loop {
                let b = (len & 0x7f) as u8;
                len >>= 7;
                s.push(if len == 0 { b } else { b | 0x80 });
                if len == 0 {
                    break;
                }
            }
            s.extend_from_slice(part);
        }
        s
    }

    #[test]
    fn modules_and_replacements() {
        let s = section(
            "go1.22.3",
            &[
                "path\texample.com/weather",
                "mod\texample.com/weather\t(devel)\t",
                "dep\tgithub.com/mark3labs/mcp-go\tv0.32.0\th1:abc=",
                "dep\tgithub.com/google/uuid\tv1.6.0\th1:def=",
                "=>\t../uuid\t(devel)\t",
                "build\t-compiler=gc",
            ],
        );
        let info = parse(&s).unwrap();
        assert_eq!(info.go_version, "go1.22.3");
        assert_eq!(info.main_path, "example.com/weather");
        assert_eq!(info.modules.len(), 3);
        assert_eq!(info.modules[1].path, "github.com/mark3labs/mcp-go");
        assert_eq!(info.modules[1].version, "v0.32.0");
        assert_eq!(info.modules[2].version, "(devel)");
    }

    #[test]
    fn garbage_is_not_build_info() {
        assert!(parse(b"").is_none());
        assert!(parse(&[0xffu8; 64]).is_none());
        let mut s = section("go1.22.3", &["path\tx"]);
        // Pre-1.18 pointer format.
        s[MAGIC.len() + 1] = 0;
        assert!(parse(&s).is_none());
        // Lengths running past the end, at every cut.
        let s = section("go1.22.3", &["path\tx", "dep\ty\tv1"]);
        for cut in 0..s.len() {
            let _ = parse(&s[..cut]);
        }
        let mut s = section("go1.22.3", &[]);
        s.truncate(HEADER_LEN);
        s.extend_from_slice(&[0xff; 11]);
        assert!(parse(&s).is_none(), "an overlong varint");
        assert!(of_elf(b"\x7fELF garbage").is_none());
    }
}
