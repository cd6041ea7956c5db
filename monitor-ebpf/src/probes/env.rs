//! libc `setenv`, for process-wide TLS bypasses switched on at run time (Node's
//! `process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0"` reaches libc through libuv).
//!
//! Only the watched variable is reported: other variables may hold secrets, and they never
//! leave the kernel.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user_str_bytes},
    macros::uprobe,
    programs::ProbeContext,
};
use monitor_common::{EventKind, SetEnvEvent, ENV_TEXT_LEN};

use crate::maps::{header, is_targeted, reserve};

const WATCHED: &[u8] = b"NODE_TLS_REJECT_UNAUTHORIZED";

/// `int setenv(const char *name, const char *value, int overwrite)`
#[uprobe]
pub fn libc_setenv(ctx: ProbeContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_targeted((pid_tgid >> 32) as u32) {
        return 0;
    }
    let (Some(name), Some(value)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) else {
        return 0;
    };
    let mut buf = [0u8; 32];
    // SAFETY: user pointer read with a faulting-safe helper.
    let Ok(read) = (unsafe { bpf_probe_read_user_str_bytes(name as *const u8, &mut buf) }) else {
        return 0;
    };
    if read != WATCHED {
        return 0;
    }
    let Some(mut entry) = reserve::<SetEnvEvent>() else {
        return 0;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: exclusive reserved slot; bounded user reads.
    unsafe {
        (*event).header = header(EventKind::SetEnv, pid_tgid);
        (*event).name = [0; ENV_TEXT_LEN];
        (&mut (*event).name)[..WATCHED.len()].copy_from_slice(WATCHED);
        (*event).name_len = WATCHED.len() as u32;
        (*event).value_len = 0;
        if let Ok(v) = bpf_probe_read_user_str_bytes(value as *const u8, &mut (*event).value) {
            (*event).value_len = v.len() as u32;
        }
    }
    entry.submit(0);
    0
}
