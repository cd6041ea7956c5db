//! Bounded payload capture from the packets themselves (`cgroup_skb/egress` on the cgroup v2
//! root): the first bytes a target's TCP connection sends, for the plaintext detectors. Every
//! packet of the host passes here; one that is not from a target's socket costs one look at its
//! own socket's storage (`CLIENT_SOCKS`, which the connect hook sets), not a map lookup.
//!
//! A segment is taken in sequence order: bytes already seen (a retransmission) are skipped, a
//! GSO super-packet is one segment with all its payload, and at most `SOCKET_CAPTURE_BUDGET`
//! bytes per socket are sent. Capture stops at a userspace verdict or when the budget is spent.
//! A TLS connection (a segment starts with a ClientHello record) sends its ClientHello (for the
//! SNI), then only the headers of its next records, `MAX_TLS_RECORDS` at most: whether the
//! client sent application data over a session is read from those, not from a probe on every
//! `SSL_write`.
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::generated::{bpf_sk_storage_get, bpf_skb_load_bytes},
    macros::{btf_map, cgroup_skb},
    maps::PerCpuArray,
    programs::SkBuffContext,
    EbpfContext as _,
};
use monitor_common::{
    payload_source, sock_flags, EventKind, PayloadEvent, SockState, TlsRecordEvent,
    MAX_TLS_RECORDS, PAYLOAD_HEADER_LEN, PAYLOAD_MAX, SOCKET_CAPTURE_BUDGET,
};

use super::{connect::SOCKETS, payload::SCRATCH};
use crate::maps::{count_drop, header_for, reserve, SockStorage, EVENTS};

const IPPROTO_TCP: u8 = 6;
/// First byte of a TLS handshake record (ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;
/// Handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 1;

/// A mark on each TCP socket a target connects (socket-local storage, set by the connect hook,
/// freed with the socket). The egress hook asks every packet's socket for it first: a socket
/// without any storage answers at once, where a `SOCKETS` lookup would hash its address.
#[btf_map]
pub static CLIENT_SOCKS: SockStorage<u8, { BPF_F_NO_PREALLOC as usize }> = SockStorage::new();

#[cgroup_skb(egress)]
pub fn skb_egress(ctx: SkBuffContext) -> i32 {
    // SAFETY: `sk` of the context is the socket the packet leaves from (or null).
    let sk = unsafe { (*ctx.skb.skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return 1;
    }
    // SAFETY: lookup only (no create) on the context's socket: the one cost of every other
    // packet. The helper itself answers null for request and time-wait sockets.
    let mark =
        unsafe { bpf_sk_storage_get(CLIENT_SOCKS.as_ptr(), sk.cast(), core::ptr::null_mut(), 0) };
    if mark.is_null() {
        return 1;
    }
    let sk = sk as u64;
    let Some(state) = SOCKETS.get_ptr_mut(sk) else {
        return 1;
    };
    // SAFETY: map value pointer.
    if unsafe { (*state).flags } & sock_flags::DONE != 0 {
        return 1;
    }
    let _ = capture(&ctx, sk, state, EventKind::Payload, &SCRATCH, true);
    1
}

/// Where the TCP payload starts in the packet, its length and sequence number.
#[inline(always)]
pub fn tcp_payload(ctx: &SkBuffContext) -> Option<(u32, u32, u32)> {
    let first: u8 = ctx.load(0).ok()?;
    let (ip_len, proto) = match first >> 4 {
        4 => (((first & 0x0f) as u32) * 4, ctx.load::<u8>(9).ok()?),
        // Extension headers before TCP are not followed (rare on a client's connection).
        6 => (40, ctx.load::<u8>(6).ok()?),
        _ => return None,
    };
    if proto != IPPROTO_TCP || ip_len < 20 {
        return None;
    }
    let seq = u32::from_be(ctx.load::<u32>(ip_len as usize + 4).ok()?);
    let data_off: u8 = ctx.load(ip_len as usize + 12).ok()?;
    let off = ip_len + ((data_off >> 4) as u32) * 4;
    let total = ctx.len();
    (total > off).then(|| (off, total - off, seq))
}

/// Send the new bytes of this segment of socket `sk` as a `kind` record built in `scratch`
/// (one per-CPU record per hook: ingress runs in softirq context and may interrupt an egress
/// capture on the same CPU). `walk_tls`: after a ClientHello, report the connection's record
/// headers (a client's connection); otherwise the socket is done with its ClientHello.
#[inline(always)]
pub fn capture(
    ctx: &SkBuffContext,
    sk: u64,
    state: *mut SockState,
    kind: EventKind,
    scratch: &PerCpuArray<PayloadEvent>,
    walk_tls: bool,
) -> Option<()> {
    let (off, len, seq) = tcp_payload(ctx)?;
    // SAFETY: map value pointer (a racing update at worst re-sends or skips a few bytes).
    let s = unsafe { *state };
    let mut skip = 0u32;
    if s.flags & sock_flags::SEQ_KNOWN != 0 {
        let behind = s.next_seq.wrapping_sub(seq) as i32;
        if behind >= len as i32 {
            return None; // all of it seen already
        }
        if behind > 0 {
            skip = behind as u32;
        }
    }
    // SAFETY: as above.
    unsafe {
        (*state).next_seq = seq.wrapping_add(len);
        (*state).flags |= sock_flags::SEQ_KNOWN;
    }
    if s.flags & sock_flags::TLS != 0 {
        walk_records(ctx, sk, state, off, seq, len);
        return Some(());
    }
    let budget = SOCKET_CAPTURE_BUDGET.saturating_sub(s.captured);
    let want = (len - skip).min(PAYLOAD_MAX as u32).min(budget);
    if want == 0 {
        // SAFETY: as above.
        unsafe { (*state).flags |= sock_flags::DONE };
        return None;
    }
    let scratch = scratch.get_ptr_mut(0)?;
    // SAFETY: this CPU's scratch record.
    unsafe {
        (*scratch).header = header_for(kind, s.tgid, s.start);
        (*scratch).sock = sk;
        (*scratch).fd = s.fd;
        (*scratch).source = payload_source::PACKET;
        (*scratch).len = len - skip;
        (*scratch).captured = 0;
        // The verifier must see the copy length bounded: a volatile read hides `want` from
        // the compiler (which would drop the mask), the mask bounds it to [1, PAYLOAD_MAX].
        let n = core::ptr::read_volatile(&want) as usize;
        let n = ((n - 1) & (PAYLOAD_MAX - 1)) + 1;
        let data = &mut (*scratch).data;
        // The raw helper: the wrapper clamps the length again in a way the verifier cannot
        // prove non-zero.
        if bpf_skb_load_bytes(ctx.as_ptr(), off + skip, data.as_mut_ptr().cast(), n as u32) != 0 {
            return None;
        }
        (*scratch).captured = n as u32;
        let captured = s.captured + n as u32;
        (*state).captured = captured;
        // A ClientHello record (content type, major version 3, handshake type 1) at the start
        // of a segment: first thing on the connection, or after a plaintext preamble such as
        // PostgreSQL's SSLRequest.
        let tls = skip == 0
            && n >= 6
            && data[0] == TLS_HANDSHAKE
            && data[1] == 3
            && data[5] == CLIENT_HELLO;
        if captured >= SOCKET_CAPTURE_BUDGET && !tls {
            (*state).flags |= sock_flags::DONE;
        }
        let bytes = core::slice::from_raw_parts(scratch as *const u8, PAYLOAD_HEADER_LEN + n);
        if EVENTS.output::<[u8]>(bytes, 0).is_err() {
            count_drop(monitor_common::Drop::RingBufFull);
        }
        // An encrypted connection: its ClientHello went to userspace (for the SNI); from here
        // on only record headers, starting with the ClientHello's.
        if tls && !walk_tls {
            (*state).flags |= sock_flags::DONE;
        } else if tls {
            (*state).flags |= sock_flags::TLS;
            (*state).next_record = seq.wrapping_add(skip);
            walk_records(ctx, sk, state, off, seq, len);
        }
    }
    Some(())
}

/// Report the headers of the TLS records that start in this segment (`[seq, seq + len)` of
/// the stream, payload at `off` in the packet). A header cut by the segment's end, or a gap in
/// the stream, loses the thread: the connection is done then.
#[inline(always)]
fn walk_records(ctx: &SkBuffContext, sk: u64, state: *mut SockState, off: u32, seq: u32, len: u32) {
    // SAFETY: map value pointer, read once and written back below.
    let s = unsafe { *state };
    let mut next = s.next_record;
    let mut records = s.records;
    let mut lost = false;
    for _ in 0..8 {
        if records >= MAX_TLS_RECORDS {
            break;
        }
        let rel = next.wrapping_sub(seq) as i32;
        if rel < 0 {
            lost = true; // the header was in bytes we never saw
            break;
        }
        let rel = rel as u32;
        if rel >= len {
            break; // starts in a later segment
        }
        if rel + 5 > len {
            lost = true; // cut by the segment's end
            break;
        }
        let mut header = [0u8; 6];
        // SAFETY: copies into a stack buffer from inside the packet.
        if unsafe { bpf_skb_load_bytes(ctx.as_ptr(), off + rel, header.as_mut_ptr().cast(), 5) }
            != 0
        {
            lost = true;
            break;
        }
        if rel + 6 <= len {
            // SAFETY: as above (the record's first content byte, when in this segment).
            unsafe {
                bpf_skb_load_bytes(
                    ctx.as_ptr(),
                    off + rel + 5,
                    header.as_mut_ptr().add(5).cast(),
                    1,
                )
            };
        }
        let record_len = u16::from_be_bytes([header[3], header[4]]) as u32;
        if let Some(mut entry) = reserve::<TlsRecordEvent>() {
            entry.write(TlsRecordEvent {
                header: header_for(EventKind::TlsRecord, s.tgid, s.start),
                sock: sk,
                content_type: header[0],
                first: header[5],
                _pad: 0,
                len: record_len,
            });
            entry.submit(0);
        }
        next = next.wrapping_add(5 + record_len);
        records += 1;
    }
    // SAFETY: map value pointer.
    unsafe {
        (*state).next_record = next;
        (*state).records = records;
        if lost || records >= MAX_TLS_RECORDS {
            (*state).flags |= sock_flags::DONE;
        }
    }
}
