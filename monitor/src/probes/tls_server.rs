//! The `SSL_write` probe of TLS servers (`monitor-ebpf/src/probes/tls_server.rs`): attached to
//! one process at a time, never host-wide, and only to targets that listen and took the server
//! role in a handshake. A write costs a uprobe trap (~16 µs on the project's machines), so no
//! other process, and no process that only speaks TLS as a client, ever pays it.
use std::{
    collections::HashMap, fs, num::NonZeroU32, os::unix::fs::MetadataExt as _, path::PathBuf,
};

use anyhow::Context as _;
use aya::{
    programs::{
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLink, UProbeScope},
        UProbe,
    },
    Ebpf,
};
use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

use super::uprobes::{exec_mappings, kind_by_name, LibraryKind};
use crate::output::{Status, StatusKind};

const PROGRAM: &str = "ssl_write_server";
/// The functions a server writes its responses with (`SSL_write_ex`: OpenSSL 1.1.1 and later,
/// Python 3.10 and later).
const SYMBOLS: [&str; 2] = ["SSL_write", "SSL_write_ex"];

/// File offsets of `SYMBOLS` defined in an ELF file's dynamic symbol table.
pub fn write_offsets(data: &[u8]) -> Vec<(&'static str, u64)> {
    let Ok(file) = object::File::parse(data) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for symbol in file.dynamic_symbols() {
        if !symbol.is_definition() {
            continue;
        }
        let Ok(name) = symbol.name() else { continue };
        let name = name.split('@').next().unwrap_or(name);
        let Some(wanted) = SYMBOLS.iter().find(|s| **s == name) else {
            continue;
        };
        if found.iter().any(|(n, _)| n == wanted) {
            continue;
        }
        let Some(section) = symbol
            .section_index()
            .and_then(|i| file.section_by_index(i).ok())
        else {
            continue;
        };
        let Some((section_offset, _)) = section.file_range() else {
            continue;
        };
        if let Ok(UProbeAttachLocation::AbsoluteOffset(offset)) =
            UProbeAttachLocation::from_virtual_address(
                symbol.address(),
                section.address(),
                section_offset,
            )
        {
            found.push((*wanted, offset));
        }
    }
    found
}

/// The per-process `SSL_write` probes.
pub struct ServerWrites {
    enabled: bool,
    /// Offsets by file (device, inode), read once.
    offsets: HashMap<(u64, u64), Vec<(&'static str, u64)>>,
    /// Probes by process (pid, start time).
    links: HashMap<(u32, u64), Vec<UProbeLink>>,
}

impl ServerWrites {
    /// Load the program; a failure is reported once and makes every attach a no-op.
    pub fn load(ebpf: &mut Ebpf) -> (Self, Option<Status>) {
        let result = (|| -> anyhow::Result<()> {
            let program: &mut UProbe = ebpf
                .program_mut(PROGRAM)
                .context("program missing from the eBPF object")?
                .try_into()?;
            program.load()?;
            Ok(())
        })();
        let status = result.as_ref().err().map(|err| {
            Status::new(
                StatusKind::Skipped,
                Some(format!("uprobe:{PROGRAM}")),
                format!("{err:#}; without it: no HSTS_MISSING findings"),
            )
        });
        let writes = Self {
            enabled: result.is_ok(),
            offsets: HashMap::new(),
            links: HashMap::new(),
        };
        (writes, status)
    }

    /// Attach the probe to the OpenSSL this process runs (shared libssl, or an executable or
    /// library that embeds it), for this process only.
    pub fn attach(&mut self, ebpf: &mut Ebpf, pid: u32, start: u64) -> Vec<Status> {
        let mut statuses = Vec::new();
        let Some(scope) = NonZeroU32::new(pid) else {
            return statuses;
        };
        if !self.enabled || self.links.contains_key(&(pid, start)) {
            return statuses;
        }
        let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
        let mut candidates: Vec<(String, PathBuf)> = Vec::new();
        for mapping in exec_mappings(&maps) {
            let name = mapping.path.rsplit('/').next().unwrap_or_default();
            let libssl = kind_by_name(&mapping.path) == Some(LibraryKind::Libssl);
            if !libssl && !name.contains("node") && !name.contains("ssl") {
                continue;
            }
            let open = if mapping.deleted {
                PathBuf::from(format!("/proc/{pid}/map_files/{}", mapping.range))
            } else {
                PathBuf::from(format!("/proc/{pid}/root{}", mapping.path))
            };
            candidates.push((mapping.path, open));
        }
        let mut links = Vec::new();
        let mut attached_to = Vec::new();
        for (path, open) in candidates {
            let Ok(file) = fs::File::open(&open) else {
                continue;
            };
            let Ok(meta) = file.metadata() else { continue };
            let inode = (meta.dev(), meta.ino());
            let offsets = self.offsets.entry(inode).or_insert_with(|| {
                // SAFETY: a read-only mapping of a file we only read.
                match unsafe { memmap2::Mmap::map(&file) } {
                    Ok(data) => write_offsets(&data),
                    Err(_) => Vec::new(),
                }
            });
            if offsets.is_empty() {
                continue;
            }
            let fd_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
            for (symbol, offset) in offsets.iter() {
                let result = (|| -> anyhow::Result<UProbeLink> {
                    let program: &mut UProbe = ebpf
                        .program_mut(PROGRAM)
                        .context("program missing")?
                        .try_into()?;
                    let point = UProbeAttachPoint {
                        location: UProbeAttachLocation::AbsoluteOffset(*offset),
                        cookie: None,
                    };
                    let id = program.attach(point, &fd_path, UProbeScope::OneProcess(scope))?;
                    Ok(program.take_link(id)?)
                })();
                match result {
                    Ok(link) => {
                        links.push(link);
                        attached_to.push(format!("{symbol} in {path}"));
                    }
                    Err(err) => statuses.push(Status::new(
                        StatusKind::Skipped,
                        Some(format!("uprobe:{path}")),
                        format!("pid {pid}: {symbol} for server responses: {err:#}"),
                    )),
                }
            }
        }
        if attached_to.is_empty() {
            statuses.push(Status::new(
                StatusKind::Skipped,
                Some(format!("uprobe:{PROGRAM}")),
                format!(
                    "pid {pid} serves TLS, but no OpenSSL with SSL_write was found in it: its responses (HSTS) are not seen"
                ),
            ));
        } else {
            statuses.push(Status::new(
                StatusKind::Attached,
                Some(format!("uprobe:{PROGRAM}")),
                format!(
                    "pid {pid} serves TLS: its server responses are read ({}; this process only)",
                    attached_to.join(", ")
                ),
            ));
        }
        self.links.insert((pid, start), links);
        statuses
    }

    /// The process is gone: its probes (for the caller to drop off the event loop).
    pub fn release(&mut self, key: (u32, u64)) -> Vec<UProbeLink> {
        self.links.remove(&key).unwrap_or_default()
    }

    /// Every probe (at shutdown).
    pub fn release_all(&mut self) -> Vec<UProbeLink> {
        self.links.drain().flat_map(|(_, links)| links).collect()
    }
}
