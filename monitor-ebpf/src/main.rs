//! Kernel programs of egress-monitor, built for `bpfel-unknown-none` with nightly and embedded in
//! the `egress-monitor` binary by `monitor/build.rs`.
//!
//! The kernel side collects facts and holds no policy: every program first checks the target set
//! (one hash lookup for untargeted processes), copies bounded data into the ring buffer and counts
//! what it had to drop. One probe family per file under `probes/`.
//!
//! On other targets the crate builds as an empty host binary, so workspace-wide `cargo check` and
//! `cargo clippy` lint it too.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

mod maps;
mod probes;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {}
