//! `cgroup/sock_release`: a socket's last descriptor is closed. Every other end of a tracked
//! socket is seen by the TCP state machine; this catches the one it never reports: a connect
//! that failed before a SYN was sent (no route, no local address), whose socket stays closed.
use aya_ebpf::{macros::cgroup_sock, programs::SockContext};
use monitor_common::{sock_flags, CONNECT_FAILED_EARLY};

use super::connect::{connect_result, SOCKETS};

#[cgroup_sock(sock_release)]
pub fn sock_release(ctx: SockContext) -> i32 {
    let sk = ctx.sock as u64;
    let Some(state) = SOCKETS.get_ptr(sk) else {
        return 1;
    };
    // SAFETY: map value pointer, copied out.
    let s = unsafe { *state };
    if s.flags & sock_flags::AWAIT_OUTCOME != 0 && s.flags & sock_flags::SYN_SENT == 0 {
        connect_result(sk, &s, CONNECT_FAILED_EARLY);
        let _ = SOCKETS.remove(sk);
    }
    1
}
