//! egress-monitor: an eBPF runtime egress monitor for MCP servers (the library behind the
//! `egress-monitor` binary).
//!
//! It watches MCP server processes from the kernel and reports when their credentials or
//! sessions are exposed to interception. This binary is the userspace agent: it checks the
//! machine, loads the kernel programs built from `monitor-ebpf`, discovers targets, and streams
//! what it sees as JSON lines or as a readable text view.
//!
//! ```text
//! egress-monitor run --pid 1234 --format text
//! egress-monitor doctor
//! ```
pub mod analyze;
pub mod config;
pub mod decode;
pub mod detect;
pub mod doctor;
pub mod metrics;
pub mod output;
pub mod pins;
pub mod probes;
pub mod process;
pub mod record;
pub mod replay;
pub mod report;
pub mod run;
pub mod suppress;
