//! tracefs: where it is, mounting it when it is missing, and reading tracepoint `format` files so
//! field offsets that moved between kernel versions are taken from this kernel.
use std::{
    collections::HashMap,
    ffi::CString,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _};

pub const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

/// The mounted tracefs, if any (the modern mount point first, then the debugfs one).
pub fn find() -> Option<PathBuf> {
    [TRACEFS, DEBUGFS_TRACING]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.join("events").is_dir())
}

/// Whether the kernel knows the tracefs filesystem type at all.
pub fn supported_by_kernel() -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .map(|s| {
            s.lines()
                .any(|l| l.split_whitespace().last() == Some("tracefs"))
        })
        .unwrap_or(false)
}

/// Find tracefs, mounting it at /sys/kernel/tracing when it is missing.
pub fn ensure_mounted() -> anyhow::Result<PathBuf> {
    if let Some(path) = find() {
        return Ok(path);
    }
    if !supported_by_kernel() {
        bail!("this kernel has no tracefs (CONFIG_TRACING); syscall tracepoints cannot be used");
    }
    let target = CString::new(TRACEFS).expect("no NUL");
    let fstype = CString::new("tracefs").expect("no NUL");
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        bail!(
            "tracefs is not mounted and mounting it at {TRACEFS} failed ({err}); mount it with \
             `mount -t tracefs tracefs {TRACEFS}` (or give the agent CAP_SYS_ADMIN, or bind-mount \
             the host's /sys/kernel/tracing into its container)"
        );
    }
    find().context("tracefs was mounted but has no events directory")
}

/// Offset and size of one field of a tracepoint record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub offset: u32,
    pub size: u32,
}

/// Parse a tracepoint `format` file into field name -> offset/size.
pub fn parse_format(text: &str) -> HashMap<String, Field> {
    let mut fields = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("field:") else {
            continue;
        };
        let mut decl = None;
        let mut offset = None;
        let mut size = None;
        for part in rest.split(';') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("offset:") {
                offset = v.parse().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.parse().ok();
            } else if decl.is_none() && !part.is_empty() {
                decl = Some(part);
            }
        }
        let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else {
            continue;
        };
        // "char comm[16]" -> "comm"; "__data_loc char[] filename" -> "filename".
        let name = decl
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .split('[')
            .next()
            .unwrap_or_default();
        if !name.is_empty() {
            fields.insert(name.to_string(), Field { offset, size });
        }
    }
    fields
}

pub fn read_format(
    tracefs: &Path,
    category: &str,
    name: &str,
) -> anyhow::Result<HashMap<String, Field>> {
    let path = tracefs
        .join("events")
        .join(category)
        .join(name)
        .join("format");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "tracepoint {category}:{name} is not available ({})",
            path.display()
        )
    })?;
    Ok(parse_format(&text))
}

pub fn exists(tracefs: &Path, category: &str, name: &str) -> bool {
    tracefs.join("events").join(category).join(name).is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORK_6_18: &str = "name: sched_process_fork\nID: 318\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
\tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;\n\
\tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;\n\
\tfield:__data_loc char[] child_comm;\toffset:16;\tsize:4;\tsigned:0;\n\
\tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;\n\n\
print fmt: \"comm=%s pid=%d child_comm=%s child_pid=%d\"\n";

    const FORK_5_15: &str = "\tfield:char parent_comm[16];\toffset:8;\tsize:16;\tsigned:1;\n\
\tfield:pid_t parent_pid;\toffset:24;\tsize:4;\tsigned:1;\n\
\tfield:char child_comm[16];\toffset:28;\tsize:16;\tsigned:1;\n\
\tfield:pid_t child_pid;\toffset:44;\tsize:4;\tsigned:1;\n";

    #[test]
    fn parses_data_loc_and_array_fields() {
        let new = parse_format(FORK_6_18);
        assert_eq!(
            new["child_pid"],
            Field {
                offset: 20,
                size: 4
            }
        );
        assert_eq!(new["parent_comm"], Field { offset: 8, size: 4 });
        let old = parse_format(FORK_5_15);
        assert_eq!(
            old["child_pid"],
            Field {
                offset: 44,
                size: 4
            }
        );
        assert_eq!(
            old["child_comm"],
            Field {
                offset: 28,
                size: 16
            }
        );
    }

    #[test]
    fn ignores_malformed_lines() {
        let fields = parse_format("field:int x;\toffset:zz;\tsize:4;\nfield:;\ngarbage\n");
        assert!(fields.is_empty());
    }
}
