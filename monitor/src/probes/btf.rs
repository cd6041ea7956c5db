//! Just enough of the BPF Type Format to find struct member offsets in the running kernel's
//! `/sys/kernel/btf/vmlinux`: the hand-made CO-RE that lets the kernel programs read
//! `socket->type` without compiled-in struct layouts.
//!
//! (aya-obj parses BTF but keeps member lookup private; btf-rs is LGPL. The format is small and
//! stable: a header, a type section of variable-length records, a string section.)
use std::collections::HashMap;

use anyhow::{bail, Context as _};

const MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Clone, Copy, Debug)]
struct Type {
    name_off: u32,
    kind: u32,
    vlen: u32,
    kind_flag: bool,
    /// `size` or `type`, depending on the kind.
    size_or_type: u32,
    /// Offset of the kind-specific trailing data in the type section.
    extra: usize,
}

/// A parsed BTF blob (borrowed).
pub struct Btf<'a> {
    types: Vec<Type>,
    type_data: &'a [u8],
    strings: &'a [u8],
    structs_by_name: HashMap<&'a str, u32>,
}

fn u32_at(data: &[u8], at: usize) -> anyhow::Result<u32> {
    let bytes = data
        .get(at..at + 4)
        .with_context(|| format!("BTF truncated at byte {at}"))?;
    Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
}

impl<'a> Btf<'a> {
    pub fn parse(data: &'a [u8]) -> anyhow::Result<Self> {
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != MAGIC {
            bail!("not a little-endian BTF blob (bad magic)");
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
        let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
        let section = |off: usize, len: usize| {
            data.get(hdr_len + off..hdr_len + off + len)
                .context("BTF section outside the blob")
        };
        let type_data = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?;

        // Type ids start at 1; index 0 stands for `void`.
        let mut types = vec![Type {
            name_off: 0,
            kind: 0,
            vlen: 0,
            kind_flag: false,
            size_or_type: 0,
            extra: 0,
        }];
        let mut at = 0;
        while at < type_data.len() {
            let info = u32_at(type_data, at + 4)?;
            let ty = Type {
                name_off: u32_at(type_data, at)?,
                kind: (info >> 24) & 0x1f,
                vlen: info & 0xffff,
                kind_flag: info >> 31 == 1,
                size_or_type: u32_at(type_data, at + 8)?,
                extra: at + 12,
            };
            let vlen = ty.vlen as usize;
            let trailing = match ty.kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                _ => 0,
            };
            types.push(ty);
            at += 12 + trailing;
        }
        let mut btf = Self {
            types,
            type_data,
            strings,
            structs_by_name: HashMap::new(),
        };
        for id in 1..btf.types.len() as u32 {
            let ty = btf.types[id as usize];
            if ty.kind == KIND_STRUCT && ty.name_off != 0 {
                let name = btf.string(ty.name_off)?;
                btf.structs_by_name.entry(name).or_insert(id);
            }
        }
        Ok(btf)
    }

    fn string(&self, offset: u32) -> anyhow::Result<&'a str> {
        let tail = self
            .strings
            .get(offset as usize..)
            .context("BTF string offset out of range")?;
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        std::str::from_utf8(&tail[..end]).context("BTF string is not UTF-8")
    }

    /// Follow typedefs and qualifiers to the underlying type id.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(ty)
                    if matches!(
                        ty.kind,
                        KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
                    ) =>
                {
                    id = ty.size_or_type
                }
                _ => break,
            }
        }
        id
    }

    /// Byte offset of `member` in `struct name`, looking through anonymous structs and unions.
    pub fn member_offset(&self, name: &str, member: &str) -> anyhow::Result<u32> {
        let id = *self
            .structs_by_name
            .get(name)
            .with_context(|| format!("struct {name} not found in BTF"))?;
        self.find_member(id, member, 0)?
            .with_context(|| format!("struct {name} has no member {member}"))
    }

    fn find_member(&self, id: u32, member: &str, depth: u32) -> anyhow::Result<Option<u32>> {
        let ty = self.types[id as usize];
        if depth > 8 || !matches!(ty.kind, KIND_STRUCT | KIND_UNION) {
            return Ok(None);
        }
        for i in 0..ty.vlen as usize {
            let at = ty.extra + 12 * i;
            let name_off = u32_at(self.type_data, at)?;
            let member_type = u32_at(self.type_data, at + 4)?;
            let raw_offset = u32_at(self.type_data, at + 8)?;
            let bits = if ty.kind_flag {
                raw_offset & 0x00ff_ffff
            } else {
                raw_offset
            };
            if name_off == 0 {
                let inner = self.resolve(member_type);
                if let Some(offset) = self.find_member(inner, member, depth + 1)? {
                    return Ok(Some(bits / 8 + offset));
                }
            } else if self.string(name_off)? == member {
                if bits % 8 != 0 {
                    bail!("member {member} is a bitfield");
                }
                return Ok(Some(bits / 8));
            }
        }
        Ok(None)
    }
}

pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// Resolve the offsets the kernel programs need from the running kernel's BTF. Each group
/// (descriptor to socket, process start time) is valid on its own: a kernel missing one member
/// loses only what depends on it.
pub fn kernel_offsets(data: &[u8]) -> anyhow::Result<monitor_common::KernelOffsets> {
    use monitor_common::offsets_valid;
    let btf = Btf::parse(data)?;
    let mut offsets = monitor_common::KernelOffsets::default();
    let socket = (|| -> anyhow::Result<()> {
        offsets.task_files = btf.member_offset("task_struct", "files")?;
        offsets.files_fdt = btf.member_offset("files_struct", "fdt")?;
        offsets.fdtable_max_fds = btf.member_offset("fdtable", "max_fds")?;
        offsets.fdtable_fd = btf.member_offset("fdtable", "fd")?;
        offsets.file_private_data = btf.member_offset("file", "private_data")?;
        offsets.file_inode = btf.member_offset("file", "f_inode")?;
        offsets.inode_mode = btf.member_offset("inode", "i_mode")?;
        offsets.socket_type = btf.member_offset("socket", "type")?;
        offsets.socket_sk = btf.member_offset("socket", "sk")?;
        offsets.sock_err = btf.member_offset("sock", "sk_err")?;
        offsets.files_next_fd = btf.member_offset("files_struct", "next_fd")?;
        offsets.sock_socket = btf.member_offset("sock", "sk_socket")?;
        offsets.socket_file = btf.member_offset("socket", "file")?;
        Ok(())
    })();
    let start = (|| -> anyhow::Result<()> {
        offsets.task_group_leader = btf.member_offset("task_struct", "group_leader")?;
        // `real_start_time` before 5.5.
        offsets.task_start_boottime = btf
            .member_offset("task_struct", "start_boottime")
            .or_else(|_| btf.member_offset("task_struct", "real_start_time"))?;
        Ok(())
    })();
    let names = (|| -> anyhow::Result<()> {
        offsets.file_dentry =
            btf.member_offset("file", "f_path")? + btf.member_offset("path", "dentry")?;
        offsets.dentry_name =
            btf.member_offset("dentry", "d_name")? + btf.member_offset("qstr", "name")?;
        Ok(())
    })();
    if let (Err(a), Err(b)) = (&socket, &start) {
        bail!("{a:#}; {b:#}");
    }
    if names.is_ok() {
        offsets.valid |= offsets_valid::FILE_NAME;
    }
    if socket.is_ok() {
        offsets.valid |= offsets_valid::SOCKET;
    }
    if start.is_ok() {
        offsets.valid |= offsets_valid::START_TIME;
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Build a BTF blob: `struct outer { int a; union { int b; struct inner in; }; }`,
    /// `struct inner { int x; int y; }`.
    fn synthetic() -> Vec<u8> {
        let strings = b"\0int\0outer\0a\0b\0inner\0in\0x\0y\0".to_vec();
        let s = |name: &str| {
            let needle = format!("\0{name}\0");
            strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap() as u32
                + 1
        };
        let mut types = Vec::new();
        let mut push = |words: &[u32]| words.iter().for_each(|w| types.extend(w.to_le_bytes()));
        let info = |kind: u32, vlen: u32| (kind << 24) | vlen;
        // 1: int
        push(&[s("int"), info(KIND_INT, 0), 4, 32]);
        // 2: struct inner { int x @0; int y @32 }
        push(&[s("inner"), info(KIND_STRUCT, 2), 8]);
        push(&[s("x"), 1, 0, s("y"), 1, 32]);
        // 3: anonymous union { int b @0; struct inner in @0 }
        push(&[0, info(KIND_UNION, 2), 8]);
        push(&[s("b"), 1, 0, s("in"), 2, 0]);
        // 4: typedef to the union (anonymous members can sit behind qualifiers)
        push(&[0, info(KIND_CONST, 0), 3]);
        // 5: struct outer { int a @0; <anon> @64 }
        push(&[s("outer"), info(KIND_STRUCT, 2), 16]);
        push(&[s("a"), 1, 0, 0, 4, 64]);
        let mut blob = Vec::new();
        blob.extend(MAGIC.to_le_bytes());
        blob.extend([1u8, 0]);
        for word in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            blob.extend(word.to_le_bytes());
        }
        blob.extend(types);
        blob.extend(strings);
        blob
    }

    #[test]
    fn finds_direct_and_anonymous_members() {
        let blob = synthetic();
        let btf = Btf::parse(&blob).unwrap();
        assert_eq!(btf.member_offset("outer", "a").unwrap(), 0);
        assert_eq!(btf.member_offset("outer", "b").unwrap(), 8);
        assert_eq!(btf.member_offset("inner", "y").unwrap(), 4);
        assert!(
            btf.member_offset("outer", "x").is_err(),
            "named members are not flattened"
        );
        assert!(btf.member_offset("missing", "a").is_err());
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        assert!(Btf::parse(b"not btf at all, not btf at all").is_err());
        let mut blob = synthetic();
        blob.truncate(40);
        assert!(Btf::parse(&blob).is_err());
    }

    #[test]
    fn running_kernel_offsets_resolve() {
        let Ok(data) = std::fs::read(VMLINUX) else {
            panic!("{VMLINUX} is unreadable: this machine must have kernel BTF");
        };
        let offsets = kernel_offsets(&data).unwrap();
        assert_eq!(
            offsets.valid,
            monitor_common::offsets_valid::SOCKET
                | monitor_common::offsets_valid::START_TIME
                | monitor_common::offsets_valid::FILE_NAME
        );
        assert!(offsets.file_dentry > 0 && offsets.dentry_name > 0);
        // `max_fds` is the first member of `struct fdtable`, `state` precedes `type` in `socket`.
        assert_eq!(offsets.fdtable_max_fds, 0);
        assert!(offsets.socket_type >= 4 && offsets.socket_sk > offsets.socket_type);
        assert!(offsets.task_files > 0 && offsets.file_private_data > 0);
        assert!(offsets.file_inode > 0 && offsets.sock_err > 0);
        assert!(offsets.task_group_leader > 0 && offsets.task_start_boottime > 0);
    }
}
