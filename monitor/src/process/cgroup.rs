//! cgroups: a process's memberships, `--cgroup` selections, and container ids from cgroup paths
//! for the runtimes seen in production: Docker (cgroupfs and systemd drivers), containerd (plain,
//! nerdctl and Kubernetes CRI), CRI-O and Podman, including Kubernetes pod slices.
//!
//! Hosts may be pure cgroup v2, or hybrid (v1 controllers plus v2 at /sys/fs/cgroup/unified), so
//! every hierarchy a process belongs to is kept.

/// One line of `/proc/PID/cgroup`: `hierarchy-id:controller-list:path`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// 0 for the v2 (unified) hierarchy.
    pub hierarchy: u32,
    /// v1 controllers (`memory`, `cpu,cpuacct`, `name=systemd`); empty for v2.
    pub controllers: String,
    pub path: String,
}

pub fn parse_proc(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            Some(Membership {
                hierarchy: parts.next()?.parse().ok()?,
                controllers: parts.next()?.to_string(),
                path: parts.next()?.to_string(),
            })
        })
        .collect()
}

/// Which hierarchy a `--cgroup` path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    /// A path relative to the cgroup root: matched in every hierarchy.
    Any,
    Unified,
    /// A v1 hierarchy, by one of its controllers (or `name=...`).
    V1(String),
}

/// A `--cgroup` selection: a hierarchy and a path inside it (`/system.slice/x.service`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    pub hierarchy: Hierarchy,
    pub path: String,
}

impl std::fmt::Display for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.hierarchy {
            Hierarchy::Any => write!(f, "{}", self.path),
            Hierarchy::Unified => write!(f, "v2:{}", self.path),
            Hierarchy::V1(c) => write!(f, "{c}:{}", self.path),
        }
    }
}

fn clean(path: &str) -> String {
    format!("/{}", path.trim_matches('/'))
}

/// Resolve a `--cgroup` argument against the cgroup mounts in `mounts` (`/proc/mounts` text):
/// a path under a mount point names that hierarchy; anything else is relative to every root.
pub fn selection(arg: &str, mounts: &str) -> Selection {
    let mut best: Option<(usize, Hierarchy, &str)> = None;
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, mount_point, fstype, options, ..] = fields[..] else {
            continue;
        };
        let hierarchy = match fstype {
            "cgroup2" => Hierarchy::Unified,
            "cgroup" => {
                let controller = options
                    .split(',')
                    .find(|o| {
                        !matches!(
                            *o,
                            "rw" | "ro"
                                | "relatime"
                                | "nosuid"
                                | "nodev"
                                | "noexec"
                                | "clone_children"
                        )
                    })
                    .unwrap_or_default();
                Hierarchy::V1(controller.to_string())
            }
            _ => continue,
        };
        let Some(rest) = arg.strip_prefix(mount_point) else {
            continue;
        };
        if !(rest.is_empty() || rest.starts_with('/')) {
            continue;
        }
        if best
            .as_ref()
            .is_none_or(|(len, _, _)| mount_point.len() > *len)
        {
            best = Some((mount_point.len(), hierarchy, rest));
        }
    }
    match best {
        Some((_, hierarchy, rest)) => Selection {
            hierarchy,
            path: clean(rest),
        },
        None => Selection {
            hierarchy: Hierarchy::Any,
            path: clean(arg.strip_prefix("/sys/fs/cgroup").unwrap_or(arg)),
        },
    }
}

impl Selection {
    /// Whether a process with these memberships is inside the selected cgroup (or below it).
    pub fn contains(&self, memberships: &[Membership]) -> bool {
        memberships.iter().any(|m| {
            let in_hierarchy = match &self.hierarchy {
                Hierarchy::Any => true,
                Hierarchy::Unified => m.hierarchy == 0,
                Hierarchy::V1(c) => m.hierarchy != 0 && m.controllers.split(',').any(|x| x == c),
            };
            in_hierarchy
                && (self.path == "/"
                    || m.path == self.path
                    || m.path
                        .strip_prefix(self.path.as_str())
                        .is_some_and(|r| r.starts_with('/')))
        })
    }
}

/// The container a process runs in, from any of its cgroup paths (v2 first).
pub fn container_of(memberships: &[Membership]) -> Option<&str> {
    let mut ordered: Vec<&Membership> = memberships.iter().collect();
    ordered.sort_by_key(|m| m.hierarchy != 0);
    ordered.into_iter().find_map(|m| container_id(&m.path))
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The 64-hex container id in a cgroup path, from the innermost component that carries one.
pub fn container_id(path: &str) -> Option<&str> {
    const PREFIXES: [&str; 6] = [
        "docker-",
        "cri-containerd-",
        "crio-",
        "libpod-",
        "containerd-",
        "nerdctl-",
    ];
    for component in path.rsplit('/') {
        // conmon, the CRI-O/Podman monitor, sits beside the container, not inside it.
        if component.starts_with("crio-conmon-") || component.starts_with("libpod-conmon-") {
            continue;
        }
        let name = component.strip_suffix(".scope").unwrap_or(component);
        let id = PREFIXES
            .iter()
            .find_map(|p| name.strip_prefix(p))
            .unwrap_or(name);
        if is_container_id(id) {
            return Some(id);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e8b2a9c1d0e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f";

    #[test]
    fn docker_cgroupfs_and_systemd_drivers() {
        assert_eq!(container_id(&format!("/docker/{ID}")), Some(ID));
        assert_eq!(
            container_id(&format!("/system.slice/docker-{ID}.scope")),
            Some(ID)
        );
    }

    #[test]
    fn kubernetes_containerd_and_crio() {
        let containerd = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6c8a0f1e_2b3d_4c5e_9f01_23456789abcd.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(container_id(&containerd), Some(ID));
        let cgroupfs = format!("/kubepods/besteffort/pod6c8a0f1e-2b3d-4c5e-9f01-23456789abcd/{ID}");
        assert_eq!(container_id(&cgroupfs), Some(ID));
        let crio = format!("/kubepods.slice/kubepods-pod1.slice/crio-{ID}.scope");
        assert_eq!(container_id(&crio), Some(ID));
        let conmon = format!("/kubepods.slice/kubepods-pod1.slice/crio-conmon-{ID}.scope");
        assert_eq!(container_id(&conmon), None);
    }

    #[test]
    fn podman_and_nerdctl() {
        assert_eq!(
            container_id(&format!("/machine.slice/libpod-{ID}.scope")),
            Some(ID)
        );
        assert_eq!(
            container_id(&format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container")),
            Some(ID)
        );
        assert_eq!(container_id(&format!("/default/{ID}")), Some(ID));
    }

    #[test]
    fn host_processes_have_none() {
        assert_eq!(
            container_id("/user.slice/user-0.slice/session-3.scope"),
            None
        );
        assert_eq!(container_id("/system.slice/nginx.service"), None);
        assert_eq!(container_id("/"), None);
        assert_eq!(container_id(&format!("/docker/{}", &ID[..63])), None);
        assert_eq!(
            container_id(&format!("/docker/{}", ID.to_uppercase())),
            None
        );
    }

    #[test]
    fn proc_cgroup_text_and_container_of_hybrid_hosts() {
        let hybrid = format!("9:name=systemd:/\n4:memory:/docker/{ID}\n1:cpu,cpuacct:/\n0::/\n");
        let m = parse_proc(&hybrid);
        assert_eq!(m.len(), 4);
        assert_eq!(
            m[1],
            Membership {
                hierarchy: 4,
                controllers: "memory".into(),
                path: format!("/docker/{ID}")
            }
        );
        assert_eq!(
            container_of(&m),
            Some(ID),
            "v2 says nothing, v1 knows the container"
        );
        assert!(parse_proc("garbage\n").is_empty());
        assert_eq!(
            container_of(&parse_proc("0::/system.slice/foo.service\n")),
            None
        );
    }

    const HYBRID_MOUNTS: &str = "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0\n\
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n\
cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,cpu,cpuacct 0 0\n\
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";
    const V2_MOUNTS: &str = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n";

    #[test]
    fn selections_resolve_against_mounts() {
        let s = selection("/sys/fs/cgroup/unified/emt/", HYBRID_MOUNTS);
        assert_eq!(
            s,
            Selection {
                hierarchy: Hierarchy::Unified,
                path: "/emt".into()
            }
        );
        let s = selection("/sys/fs/cgroup/memory/docker", HYBRID_MOUNTS);
        assert_eq!(
            s,
            Selection {
                hierarchy: Hierarchy::V1("memory".into()),
                path: "/docker".into()
            }
        );
        let s = selection("/sys/fs/cgroup/cpu,cpuacct", HYBRID_MOUNTS);
        assert_eq!(
            s,
            Selection {
                hierarchy: Hierarchy::V1("cpu".into()),
                path: "/".into()
            }
        );
        let s = selection("/sys/fs/cgroup/system.slice/x.service", V2_MOUNTS);
        assert_eq!(
            s,
            Selection {
                hierarchy: Hierarchy::Unified,
                path: "/system.slice/x.service".into()
            }
        );
        let s = selection("system.slice", V2_MOUNTS);
        assert_eq!(
            s,
            Selection {
                hierarchy: Hierarchy::Any,
                path: "/system.slice".into()
            }
        );
        let s = selection("/sys/fs/cgroup/unifiedx", HYBRID_MOUNTS);
        assert_eq!(
            s.hierarchy,
            Hierarchy::Any,
            "a mount point is a whole path component"
        );
    }

    #[test]
    fn selections_contain_descendants_only() {
        let procs = parse_proc("4:memory:/docker/abc\n0::/system.slice/app.service/sub\n");
        let sel = |h: Hierarchy, p: &str| Selection {
            hierarchy: h,
            path: p.into(),
        };
        assert!(sel(Hierarchy::Unified, "/system.slice/app.service").contains(&procs));
        assert!(sel(Hierarchy::Any, "/system.slice").contains(&procs));
        assert!(!sel(Hierarchy::Unified, "/system.sl").contains(&procs));
        assert!(sel(Hierarchy::V1("memory".into()), "/docker").contains(&procs));
        assert!(!sel(Hierarchy::V1("cpu".into()), "/docker").contains(&procs));
        assert!(!sel(Hierarchy::Unified, "/docker").contains(&procs));
        assert!(sel(Hierarchy::Any, "/").contains(&procs));
    }
}
