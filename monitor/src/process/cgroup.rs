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

/// The Kubernetes pod a process belongs to, from any of its cgroup paths (v2 first): the pod's
/// UID in its dashed form. See [`pod_uid`].
pub fn pod_of(memberships: &[Membership]) -> Option<String> {
    let mut ordered: Vec<&Membership> = memberships.iter().collect();
    ordered.sort_by_key(|m| m.hierarchy != 0);
    ordered.into_iter().find_map(|m| pod_uid(&m.path))
}

/// The UID of the Kubernetes pod in a cgroup path, as the API server writes it (dashed), for
/// the layouts the kubelet creates:
/// - systemd driver: `/kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid>.slice/...`
///   and `/kubepods.slice/kubepods-pod<uid>.slice/...` (Guaranteed QoS), with the uid's dashes
///   written as `_` (systemd reads `-` in a slice name as nesting);
/// - cgroupfs driver: `/kubepods/<qos>/pod<uid>/...` and `/kubepods/pod<uid>/...`;
///
/// wherever the kubelet's cgroup root is (`/kubelet.slice/kubelet-kubepods.slice/...` in kind,
/// `/../..` prefixes seen from another cgroup namespace), in v2 and v1 hierarchies alike. A
/// static pod's UID is a 32-hex-digit hash rather than a UUID: both are accepted.
pub fn pod_uid(path: &str) -> Option<String> {
    let mut under_kubepods = false;
    for component in path.split('/') {
        if let Some(slice) = component.strip_suffix(".slice") {
            // systemd: every level of the hierarchy repeats its parents' names.
            if slice.contains("kubepods") {
                if let Some(uid) = slice
                    .rfind("-pod")
                    .and_then(|i| normalize_uid(&slice[i + 4..]))
                {
                    return Some(uid);
                }
                under_kubepods = true;
            }
        } else if component == "kubepods" || component.ends_with("kubepods") {
            under_kubepods = true;
        } else if under_kubepods {
            if let Some(uid) = component.strip_prefix("pod").and_then(normalize_uid) {
                return Some(uid);
            }
        }
    }
    None
}

/// A pod UID in its dashed, lowercase form: a UUID (8-4-4-4-12 hex digits, `_` accepted for
/// `-`) or a static pod's 32-hex-digit hash. Anything else is not a pod UID.
fn normalize_uid(raw: &str) -> Option<String> {
    let uid = raw.replace('_', "-");
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let groups: Vec<&str> = uid.split('-').collect();
    let uuid = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]) && groups.iter().all(|g| hex(g));
    let hash = uid.len() == 32 && hex(&uid);
    (uuid || hash).then_some(uid)
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

    const UID: &str = "6c8a0f1e-2b3d-4c5e-9f01-23456789abcd";
    const UID_: &str = "6c8a0f1e_2b3d_4c5e_9f01_23456789abcd";

    /// Pod UID and container id of one `/proc/PID/cgroup` text, as `load` reads them.
    fn identity(text: &str) -> (Option<String>, Option<String>) {
        let m = parse_proc(text);
        (pod_of(&m), container_of(&m).map(String::from))
    }

    #[test]
    fn pods_under_the_systemd_driver_cgroup_v2() {
        let expected = (Some(UID.to_string()), Some(ID.to_string()));
        for qos in ["burstable", "besteffort"] {
            for container in [
                format!("cri-containerd-{ID}.scope"),
                format!("crio-{ID}.scope"),
                format!("docker-{ID}.scope"),
            ] {
                let text = format!(
                    "0::/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{UID_}.slice/{container}\n"
                );
                assert_eq!(identity(&text), expected, "{text}");
            }
        }
        // Guaranteed QoS: the pod slice sits right under kubepods.slice.
        let guaranteed = format!("0::/kubepods.slice/kubepods-pod{UID_}.slice/crio-{ID}.scope\n");
        assert_eq!(identity(&guaranteed), expected);
        // CRI-O's monitor runs in the pod, beside the container: the pod, no container.
        let conmon =
            format!("0::/kubepods.slice/kubepods-pod{UID_}.slice/crio-conmon-{ID}.scope\n");
        assert_eq!(identity(&conmon), (Some(UID.to_string()), None));
        // A process in the pod slice itself (no container scope).
        assert_eq!(
            pod_uid(&format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice"
            )),
            Some(UID.to_string())
        );
        // kind and nested kubelets: the kubelet's cgroup root is not the hierarchy's root.
        let kind = format!(
            "0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(identity(&kind), expected);
        // Seen from inside another cgroup namespace (a DaemonSet with its own cgroupns).
        let relative =
            format!("0::/../../kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope\n");
        assert_eq!(identity(&relative), expected);
    }

    #[test]
    fn pods_under_the_cgroupfs_driver() {
        let expected = (Some(UID.to_string()), Some(ID.to_string()));
        for path in [
            format!("/kubepods/burstable/pod{UID}/{ID}"),
            format!("/kubepods/besteffort/pod{UID}/{ID}"),
            format!("/kubepods/pod{UID}/{ID}"),
            format!("/kubepods/burstable/pod{UID}/crio-{ID}"),
            format!("/kubepods/pod{UID}/docker-{ID}.scope"),
            format!("/kubelet/kubepods/burstable/pod{UID}/{ID}"),
        ] {
            assert_eq!(identity(&format!("0::{path}\n")), expected, "{path}");
        }
        // A static pod's UID is a hash of its manifest, not a UUID.
        let hash = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            pod_uid(&format!("/kubepods/besteffort/pod{hash}/{ID}")),
            Some(hash.to_string())
        );
        assert_eq!(
            pod_uid(&format!(
                "/kubepods.slice/kubepods-pod{hash}.slice/cri-containerd-{ID}.scope"
            )),
            Some(hash.to_string())
        );
    }

    #[test]
    fn pods_in_cgroup_v1_hierarchies() {
        // cgroup v1 (and hybrid hosts whose v2 hierarchy holds nothing): every controller has
        // the same path.
        let v1 = format!(
            "12:pids:/kubepods/burstable/pod{UID}/{ID}\n\
             11:memory:/kubepods/burstable/pod{UID}/{ID}\n\
             1:name=systemd:/kubepods/burstable/pod{UID}/{ID}\n\
             0::/\n"
        );
        assert_eq!(identity(&v1), (Some(UID.to_string()), Some(ID.to_string())));
        let systemd_v1 = format!(
            "4:memory:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope\n\
             1:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(
            identity(&systemd_v1),
            (Some(UID.to_string()), Some(ID.to_string()))
        );
        // The v2 path wins where both say something.
        let other = "aaaaaaaa-2b3d-4c5e-9f01-23456789abcd";
        let hybrid = format!("4:memory:/kubepods/pod{other}/{ID}\n0::/kubepods/pod{UID}/{ID}\n");
        assert_eq!(identity(&hybrid).0.as_deref(), Some(UID));
    }

    #[test]
    fn no_pod_outside_kubernetes_or_in_garbage() {
        for path in [
            "/".to_string(),
            "/system.slice/nginx.service".to_string(),
            format!("/system.slice/docker-{ID}.scope"),
            format!("/docker/{ID}"),
            "/user.slice/user-0.slice/session-3.scope".to_string(),
            // "pod" directories outside a kubepods hierarchy are someone else's.
            format!("/pod{UID}/{ID}"),
            format!("/system.slice/podman-pod{UID_}.slice/x.scope"),
            // Not a UID: wrong length, wrong groups, upper case, not hex.
            format!("/kubepods/burstable/pod{}/{ID}", &UID[..35]),
            format!("/kubepods/burstable/pod{}x/{ID}", &UID[..35]),
            format!("/kubepods/burstable/pod{}/{ID}", UID.to_uppercase()),
            "/kubepods/burstable/pod6c8a0f1e2b3d-4c5e-9f01-23456789abcd/x".to_string(),
            "/kubepods/burstable/podzzzzzzzz-2b3d-4c5e-9f01-23456789abcd/x".to_string(),
            "/kubepods/burstable/pod/x".to_string(),
            "/kubepods.slice/kubepods-burstable.slice".to_string(),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod.slice".to_string(),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podnot_a_uid.slice"
                .to_string(),
            "kubepods-pod".to_string(),
            "".to_string(),
        ] {
            assert_eq!(pod_uid(&path), None, "{path}");
        }
        assert_eq!(pod_of(&parse_proc("garbage\n0:x\n")), None);
        assert_eq!(pod_of(&[]), None);
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
