//! The server side's cgroup hooks (`monitor-ebpf/src/probes/server.rs`): `cgroup/bind4|6`
//! marks targets' listeners, `cgroup_skb/ingress` captures the first bytes their accepted
//! connections receive, `cgroup/sock_release` reports their ends. Attached to the same cgroup
//! v2 root as the egress data path, each on its own: one that cannot be attached is reported
//! with what is lost, and the rest keeps working.
use std::path::Path;

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
    let mut statuses = Vec::new();
    let mut failed = Vec::new();
    for (name, lost) in [
        ("bind4", "listeners of targets are not marked (no server-side findings)"),
        ("bind6", "IPv6 listeners of targets are not marked"),
        (
            "skb_ingress",
            "requests received by targets are not seen (no MCP_ENDPOINT_PLAINTEXT)",
        ),
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
                "cgroup hooks on {} (bind4/6, skb ingress, sock_release): targets' listeners are marked, the first bytes their clients send are captured; other packets cost one socket storage lookup",
                root.display()
            ),
        ));
    }
    statuses
}
