//! Container ids from cgroup paths, for the runtimes seen in production: Docker (cgroupfs and
//! systemd drivers), containerd (plain, nerdctl and Kubernetes CRI), CRI-O and Podman, including
//! Kubernetes pod slices.

/// The cgroup v2 path of a process from the text of `/proc/PID/cgroup` (the `0::` line), or the
/// first v1 hierarchy's path on hosts without the unified hierarchy.
pub fn path_from_proc(text: &str) -> Option<&str> {
    let mut fallback = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(_controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" {
            return Some(path);
        }
        fallback.get_or_insert(path);
    }
    fallback
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
    fn proc_cgroup_text() {
        assert_eq!(
            path_from_proc("0::/system.slice/foo.service\n"),
            Some("/system.slice/foo.service")
        );
        let v1 = "12:pids:/docker/abc\n11:memory:/docker/abc\n";
        assert_eq!(path_from_proc(v1), Some("/docker/abc"));
        let hybrid = "1:name=systemd:/user.slice\n0::/init.scope\n";
        assert_eq!(path_from_proc(hybrid), Some("/init.scope"));
        assert_eq!(path_from_proc(""), None);
    }
}
