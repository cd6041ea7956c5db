//! The server side's cgroup hooks (`monitor-ebpf/src/probes/server.rs`): `cgroup/bind4|6`
//! marks targets' listeners, `cgroup_skb/ingress` captures the first bytes their accepted
//! connections receive, `cgroup/sock_release` reports their ends. Attached to the same cgroup
//! v2 root as the egress data path, each on its own: one that cannot be attached is reported
//! with what is lost, and the rest keeps working.
//!
//! The ingress program sees every packet the host receives, so it is attached only once a
//! target has a listener that is not loopback-only ([`attach_ingress`]): a host whose watched
//! processes serve nothing (the usual stdio MCP server) pays nothing on receive.
use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

use anyhow::Context as _;
use aya::{
    programs::{
        cgroup_skb::CgroupSkbAttachType, CgroupAttachMode, CgroupSkb, CgroupSock, CgroupSockAddr,
    },
    Ebpf,
};

use crate::output::{Status, StatusKind};

/// The socket storage map the kernel programs mark listeners in (userspace marks listeners
/// that existed before the monitor).
pub const SERVER_SOCKS: &str = "SERVER_SOCKS";

/// The cgroup root the server side attaches to (set by [`attach`], used by [`attach_ingress`]).
static ROOT: OnceLock<PathBuf> = OnceLock::new();

fn attach_one(ebpf: &mut Ebpf, cgroup: &std::fs::File, name: &str) -> anyhow::Result<()> {
    let program = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the eBPF object"))?;
    match name {
        "bind4" | "bind6" => {
            let program: &mut CgroupSockAddr = program.try_into()?;
            program.load()?;
            program.attach(cgroup, CgroupAttachMode::Single)?;
        }
        "skb_ingress" => {
            let program: &mut CgroupSkb = program.try_into()?;
            program.load()?;
            program.attach(
                cgroup,
                CgroupSkbAttachType::Ingress,
                CgroupAttachMode::Single,
            )?;
        }
        _ => {
            let program: &mut CgroupSock = program.try_into()?;
            program.load()?;
            program.attach(cgroup, CgroupAttachMode::Single)?;
        }
    }
    Ok(())
}

/// Attach the server side's programs to the cgroup v2 root `root`.
pub fn attach(ebpf: &mut Ebpf, root: &Path) -> Vec<Status> {
    let cgroup = match std::fs::File::open(root) {
        Ok(f) => f,
        Err(err) => {
            return vec![Status::new(
                StatusKind::Skipped,
                Some("server side".into()),
                format!(
                    "opening {} failed ({err}): no MCP_ENDPOINT_PLAINTEXT or HSTS_MISSING findings",
                    root.display()
                ),
            )]
        }
    };
    let _ = ROOT.set(root.to_path_buf());
    let mut statuses = Vec::new();
    let mut failed = Vec::new();
    for (name, lost) in [
        ("bind4", "listeners of targets are not marked (no server-side findings)"),
        ("bind6", "IPv6 listeners of targets are not marked"),
        (
            "server_release",
            "ends of targets' server connections are not seen (undecided requests are judged at the process's end)",
        ),
    ] {
        if let Err(err) = attach_one(ebpf, &cgroup, name) {
            failed.push(name);
            statuses.push(Status::new(
                StatusKind::Skipped,
                Some(format!("cgroup:{name}")),
                format!("{err:#}; without it: {lost}"),
            ));
        }
    }
    if failed.is_empty() {
        statuses.push(Status::new(
            StatusKind::Attached,
            Some("server side".into()),
            format!(
                "cgroup hooks on {} (bind4/6, sock_release): targets' listeners are marked; the receive hook is attached when a target listens beyond loopback",
                root.display()
            ),
        ));
    }
    statuses
}

/// A target listens beyond loopback: attach the receive hook (once), which captures the first
/// bytes its clients send. From then on every packet the host receives costs one socket
/// storage lookup.
pub fn attach_ingress(ebpf: &mut Ebpf) -> Status {
    let result = ROOT
        .get()
        .context("the server side was not set up (no cgroup v2 root)")
        .and_then(|root| {
            let cgroup =
                std::fs::File::open(root).with_context(|| format!("opening {}", root.display()))?;
            attach_one(ebpf, &cgroup, "skb_ingress")?;
            Ok(root.clone())
        });
    match result {
        Ok(root) => Status::new(
            StatusKind::Attached,
            Some("cgroup:skb_ingress".into()),
            format!(
                "receive hook on {}: a target listens beyond loopback; the first bytes its clients send are captured, other packets cost one socket storage lookup",
                root.display()
            ),
        ),
        Err(err) => Status::new(
            StatusKind::Skipped,
            Some("cgroup:skb_ingress".into()),
            format!(
                "{err:#}; without it: requests received by targets are not seen (no MCP_ENDPOINT_PLAINTEXT)"
            ),
        ),
    }
}
