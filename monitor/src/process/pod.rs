//! Kubernetes pod identity: the namespace, name and container of a process whose cgroup path
//! names a pod UID ([`super::cgroup::pod_uid`]), read from the kubelet's pod log directory.
//!
//! The kubelet writes every container's log under `/var/log/pods`, one directory per pod and
//! one sub-directory per container:
//!
//! ```text
//! /var/log/pods/<namespace>_<pod name>_<pod uid>/<container name>/0.log
//! /var/log/containers/<pod name>_<namespace>_<container name>-<container id>.log -> ../pods/...
//! ```
//!
//! A pod is found by its UID (namespaces and names cannot hold `_`, so the directory name
//! splits in three). Container names are not in the pod directory next to their ids, so a
//! container is named by the kubelet's per-container symlink in the sibling `containers`
//! directory when there is one, else by the pod's only container directory, and left unnamed
//! rather than guessed when neither says.
//!
//! Nothing is read for processes outside Kubernetes. The directory listing is cached and
//! re-read when a UID is not in it (when the directory changed, else at most once a second);
//! each (pod, container) is resolved once, so after the first process of a container the cost
//! per process is one hash lookup. Both tables are bounded.
use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

use serde::Serialize;

/// Where the kubelet writes pod logs.
pub const DEFAULT_POD_LOG_DIR: &str = "/var/log/pods";

/// How often an unanswered question may read the directories again.
const RETRY: Duration = Duration::from_secs(1);
/// Pod directories kept from one listing (a node runs at most a few hundred pods).
const MAX_PODS: usize = 16_384;
/// (pod, container) answers kept; the table starts over when full.
const MAX_ANSWERS: usize = 4_096;
/// Longest file name the kubelet writes for a container symlink, before `.log` (ext4's 255).
const SYMLINK_NAME_MAX: usize = 255 - ".log".len();

/// `process.pod` in the JSON contract. `namespace` and `name` are null when the pod log
/// directory does not know the UID (not mounted into the agent's container, say); `container`
/// is null when no container could be named without guessing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Pod {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub uid: String,
    pub container: Option<String>,
}

/// The pod log directory and what was learnt from it. Shared by the threads that read /proc.
#[derive(Debug)]
pub struct PodNames {
    root: PathBuf,
    /// The kubelet's per-container symlinks (`/var/log/containers`, beside `root`).
    links: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Pod UID -> (namespace, name) from the last listing of `root`.
    pods: HashMap<String, (String, String)>,
    /// When `root` was last listed, and its modification time then.
    listed: Option<(Instant, Option<SystemTime>)>,
    /// (pod UID, container id) -> what was found.
    answers: HashMap<(String, Option<String>), Answer>,
}

#[derive(Debug)]
struct Answer {
    pod: Pod,
    /// Nothing left to learn: names and container known (or no container to name).
    complete: bool,
    /// An incomplete answer is looked for again from then on.
    retry_at: Instant,
}

impl Default for PodNames {
    fn default() -> Self {
        Self::new(DEFAULT_POD_LOG_DIR)
    }
}

impl PodNames {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let links = root.parent().unwrap_or(Path::new("/")).join("containers");
        Self {
            root,
            links,
            state: Mutex::new(State::default()),
        }
    }

    /// The pod with this UID, and the name of the container with this id in it.
    pub fn lookup(&self, uid: &str, container_id: Option<&str>) -> Pod {
        self.lookup_at(uid, container_id, Instant::now())
    }

    fn lookup_at(&self, uid: &str, container_id: Option<&str>, now: Instant) -> Pod {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let key = (uid.to_string(), container_id.map(String::from));
        if let Some(answer) = state.answers.get(&key) {
            if answer.complete || now < answer.retry_at {
                return answer.pod.clone();
            }
        }
        if !state.pods.contains_key(uid) {
            self.relist(&mut state, now);
        }
        let pod = self.resolve(&state, uid, container_id);
        let complete = pod.name.is_some() && (container_id.is_none() || pod.container.is_some());
        if state.answers.len() >= MAX_ANSWERS {
            state.answers.clear();
        }
        state.answers.insert(
            key,
            Answer {
                pod: pod.clone(),
                complete,
                retry_at: now + RETRY,
            },
        );
        pod
    }

    /// List the pod directories again, when it can tell something new: the first time, when the
    /// directory changed since, or a second after the last listing.
    fn relist(&self, state: &mut State, now: Instant) {
        let modified = fs::metadata(&self.root).and_then(|m| m.modified()).ok();
        let due = match state.listed {
            None => true,
            Some((at, before)) => {
                now.duration_since(at) >= RETRY || (modified.is_some() && modified != before)
            }
        };
        if !due {
            return;
        }
        state.listed = Some((now, modified));
        state.pods.clear();
        let Ok(entries) = fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            if state.pods.len() >= MAX_PODS {
                break;
            }
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = entry.file_name();
            if let Some((namespace, pod, uid)) = name.to_str().and_then(parse_pod_dir) {
                state
                    .pods
                    .insert(uid.to_string(), (namespace.to_string(), pod.to_string()));
            }
        }
    }

    fn resolve(&self, state: &State, uid: &str, container_id: Option<&str>) -> Pod {
        let mut pod = Pod {
            namespace: None,
            name: None,
            uid: uid.to_string(),
            container: None,
        };
        let Some((namespace, name)) = state.pods.get(uid) else {
            return pod;
        };
        if let Some(id) = container_id {
            let dir = self.root.join(format!("{namespace}_{name}_{uid}"));
            pod.container = self.container(&dir, namespace, name, id);
        }
        pod.namespace = Some(namespace.clone());
        pod.name = Some(name.clone());
        pod
    }

    /// The name of container `id` of the pod whose log directory is `dir`: the container
    /// directory the kubelet's symlink for `id` names, else the only container directory
    /// unless a symlink ties that container to another id (then `id` is the pod's sandbox,
    /// which has no log, or a restarted container whose symlink the kubelet has not made yet).
    fn container(&self, dir: &Path, namespace: &str, pod: &str, id: &str) -> Option<String> {
        let names: Vec<String> = fs::read_dir(dir)
            .ok()?
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        let linked: Vec<&String> = names
            .iter()
            .filter(|c| {
                let link = self.links.join(symlink_name(pod, namespace, c, id));
                fs::symlink_metadata(link).is_ok()
            })
            .collect();
        match (&linked[..], &names[..]) {
            ([one], _) => Some((*one).clone()),
            ([], [only]) if !self.linked_to_another_id(pod, namespace, only) => Some(only.clone()),
            _ => None,
        }
    }

    /// Whether the kubelet's symlink directory has a log symlink for this container (any id).
    fn linked_to_another_id(&self, pod: &str, namespace: &str, container: &str) -> bool {
        let prefix = format!("{pod}_{namespace}_{container}-");
        let Ok(entries) = fs::read_dir(&self.links) else {
            return false;
        };
        entries.flatten().any(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".log"))
        })
    }
}

/// `<namespace>_<name>_<uid>`: namespaces and pod names are DNS names (no `_`), UIDs have none.
fn parse_pod_dir(name: &str) -> Option<(&str, &str, &str)> {
    let (namespace, rest) = name.split_once('_')?;
    let (pod, uid) = rest.rsplit_once('_')?;
    (!namespace.is_empty() && !pod.is_empty() && !uid.is_empty()).then_some((namespace, pod, uid))
}

/// The kubelet's symlink for a container's log in `/var/log/containers`:
/// `<pod>_<namespace>_<container>-<container id>.log`, cut to fit a file name.
fn symlink_name(pod: &str, namespace: &str, container: &str, id: &str) -> String {
    let mut name = format!("{pod}_{namespace}_{container}-{id}");
    if name.len() > SYMLINK_NAME_MAX {
        let mut end = SYMLINK_NAME_MAX;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name.push_str(".log");
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "6c8a0f1e-2b3d-4c5e-9f01-23456789abcd";
    const ID: &str = "3f4e8b2a9c1d0e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f";
    const OTHER_ID: &str = "0000000000000000000000000000000000000000000000000000000000000abc";

    /// A `/var/log` tree laid out as the kubelet writes it, removed on drop.
    struct LogTree(PathBuf);

    impl LogTree {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("em-pods-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("pods")).unwrap();
            fs::create_dir_all(dir.join("containers")).unwrap();
            Self(dir)
        }

        fn pods(&self) -> PathBuf {
            self.0.join("pods")
        }

        /// `pods/<ns>_<name>_<uid>/<container>/0.log` for each container.
        fn pod(&self, namespace: &str, name: &str, uid: &str, containers: &[&str]) -> PathBuf {
            let dir = self.pods().join(format!("{namespace}_{name}_{uid}"));
            for c in containers {
                fs::create_dir_all(dir.join(c)).unwrap();
                fs::write(
                    dir.join(c).join("0.log"),
                    "2025-01-01T00:00:00Z stdout F hi\n",
                )
                .unwrap();
            }
            dir
        }

        /// The kubelet's `containers/<pod>_<ns>_<container>-<id>.log` symlink.
        fn link(&self, namespace: &str, name: &str, uid: &str, container: &str, id: &str) {
            let target = self
                .pods()
                .join(format!("{namespace}_{name}_{uid}"))
                .join(container)
                .join("0.log");
            std::os::unix::fs::symlink(
                target,
                self.0
                    .join("containers")
                    .join(symlink_name(name, namespace, container, id)),
            )
            .unwrap();
        }
    }

    impl Drop for LogTree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn pod(ns: &str, name: &str, container: Option<&str>) -> Pod {
        Pod {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            uid: UID.into(),
            container: container.map(String::from),
        }
    }

    #[test]
    fn pod_directory_names() {
        assert_eq!(
            parse_pod_dir(&format!("kube-system_coredns-5d78c9869d-x7k2p_{UID}")),
            Some(("kube-system", "coredns-5d78c9869d-x7k2p", UID))
        );
        assert_eq!(
            parse_pod_dir("default_web.example_0123456789abcdef0123456789abcdef"),
            Some(("default", "web.example", "0123456789abcdef0123456789abcdef"))
        );
        for bad in ["", "x", "a_b", "_b_c", "a__c", "a_b_"] {
            assert_eq!(parse_pod_dir(bad), None, "{bad}");
        }
    }

    #[test]
    fn symlink_names_are_the_kubelets() {
        assert_eq!(
            symlink_name("web-7d4b9", "prod", "app", ID),
            format!("web-7d4b9_prod_app-{ID}.log")
        );
        let long = "p".repeat(235);
        let name = symlink_name(&long, "prod", "app", ID);
        assert_eq!(name.len(), 255);
        assert!(name.ends_with("_prod_app-3f4e8b.log"), "{name}");
    }

    #[test]
    fn a_single_container_pod() {
        let tree = LogTree::new("single");
        tree.pod("mcp", "weather-7d4b9c-x2x9z", UID, &["server"]);
        tree.pod(
            "default",
            "other",
            "aaaaaaaa-2b3d-4c5e-9f01-23456789abcd",
            &["x"],
        );
        let names = PodNames::new(tree.pods());
        assert_eq!(
            names.lookup(UID, Some(ID)),
            pod("mcp", "weather-7d4b9c-x2x9z", Some("server"))
        );
        // No container scope in the path (a process in the pod slice itself).
        assert_eq!(
            names.lookup(UID, None),
            pod("mcp", "weather-7d4b9c-x2x9z", None)
        );
    }

    #[test]
    fn several_containers_are_named_by_the_kubelets_symlinks_or_not_at_all() {
        let tree = LogTree::new("several");
        tree.pod("prod", "api-0", UID, &["init-db", "app", "sidecar"]);
        tree.link("prod", "api-0", UID, "app", ID);
        let names = PodNames::new(tree.pods());
        assert_eq!(
            names.lookup(UID, Some(ID)),
            pod("prod", "api-0", Some("app"))
        );
        // No symlink names it: the pod, not a guessed container.
        assert_eq!(
            names.lookup(UID, Some(OTHER_ID)),
            pod("prod", "api-0", None)
        );
    }

    #[test]
    fn the_only_directory_is_not_lent_to_another_id() {
        // One container directory whose symlink names its id: that id is the container; any
        // other id of the pod is its sandbox ("pause", no log directory) or a restart whose
        // symlink is not there yet, and is not named.
        let tree = LogTree::new("link-single");
        tree.pod("prod", "job-1", UID, &["worker"]);
        tree.link("prod", "job-1", UID, "worker", ID);
        let names = PodNames::new(tree.pods());
        assert_eq!(
            names.lookup(UID, Some(ID)),
            pod("prod", "job-1", Some("worker"))
        );
        assert_eq!(
            names.lookup(UID, Some(OTHER_ID)),
            pod("prod", "job-1", None)
        );
    }

    #[test]
    fn unknown_pods_keep_their_uid_and_are_found_once_they_appear() {
        let tree = LogTree::new("later");
        let names = PodNames::new(tree.pods());
        let t0 = Instant::now();
        let unknown = names.lookup_at(UID, Some(ID), t0);
        assert_eq!(
            unknown,
            Pod {
                namespace: None,
                name: None,
                uid: UID.into(),
                container: None
            }
        );
        tree.pod("mcp", "fetch-0", UID, &["fetch"]);
        // Within the second the question is not asked again.
        assert_eq!(
            names.lookup_at(UID, Some(ID), t0 + Duration::from_millis(10)),
            unknown
        );
        assert_eq!(
            names.lookup_at(UID, Some(ID), t0 + RETRY),
            pod("mcp", "fetch-0", Some("fetch"))
        );
    }

    #[test]
    fn a_new_pod_directory_is_seen_at_once() {
        // Another pod's first process, read right after a listing: the directory changed, so
        // it is listed again without waiting for the second to pass.
        let tree = LogTree::new("new");
        tree.pod("a", "first", "aaaaaaaa-2b3d-4c5e-9f01-23456789abcd", &["c"]);
        let names = PodNames::new(tree.pods());
        let t0 = Instant::now();
        assert_eq!(
            names
                .lookup_at("aaaaaaaa-2b3d-4c5e-9f01-23456789abcd", None, t0)
                .name
                .as_deref(),
            Some("first")
        );
        // Make sure the directory's modification time moves (coarse clocks).
        std::thread::sleep(Duration::from_millis(20));
        tree.pod("b", "second", UID, &["c"]);
        assert_eq!(
            names.lookup_at(UID, Some(ID), t0 + Duration::from_millis(1)),
            pod("b", "second", Some("c"))
        );
    }

    #[test]
    fn a_missing_directory_costs_one_look_a_second() {
        let names = PodNames::new("/nonexistent/egress-monitor/pods");
        let t0 = Instant::now();
        for i in 0..100 {
            let p = names.lookup_at(UID, Some(ID), t0 + Duration::from_millis(i));
            assert_eq!(p.uid, UID);
            assert_eq!(p.name, None);
        }
        let state = names.state.lock().unwrap();
        assert_eq!(state.listed.map(|(at, _)| at), Some(t0), "listed once");
    }

    #[test]
    fn answers_are_cached_and_bounded() {
        let tree = LogTree::new("bounded");
        tree.pod("mcp", "s-0", UID, &["server"]);
        let names = PodNames::new(tree.pods());
        let first = names.lookup(UID, Some(ID));
        // Once answered, the directories are not read again for that container.
        fs::remove_dir_all(tree.pods()).unwrap();
        assert_eq!(names.lookup(UID, Some(ID)), first);
        for i in 0..(MAX_ANSWERS + 10) {
            names.lookup(UID, Some(&format!("{i:064x}")));
        }
        assert!(names.state.lock().unwrap().answers.len() <= MAX_ANSWERS);
    }

    #[test]
    fn the_symlink_directory_is_beside_the_pod_directory() {
        let names = PodNames::new("/host/var/log/pods");
        assert_eq!(names.links, Path::new("/host/var/log/containers"));
        assert_eq!(PodNames::default().links, Path::new("/var/log/containers"));
    }
}
