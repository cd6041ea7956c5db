//! `cargo xtask check-deploy`, also run by `cargo xtask test`: the packaging in `deploy/`
//! checked offline, the way an operator's tools would see it.
//!
//! - the least-privilege capability list is read from one place, `deploy/README.md`
//!   ("Capabilities"), and must equal the doctor's list (`LINUX_CAPS` in
//!   `monitor/src/probes/caps.rs`), the systemd unit's `AmbientCapabilities` and
//!   `CapabilityBoundingSet`, the DaemonSet's `capabilities.add` and every `--cap-add=` of the
//!   README;
//! - the systemd unit passes `systemd-analyze verify` (no warning either: an unknown or
//!   misspelled setting is only a warning there) and its `systemd-analyze security` exposure
//!   stays at or under [`MAX_EXPOSURE`]; the logrotate snippet passes `logrotate --debug`;
//! - every Kubernetes manifest validates against the Kubernetes schemas (`kubernetes-validate
//!   --strict`, from PyPI, pinned in `deploy/requirements.txt`, in `deploy/.venv`) of
//!   [`KUBERNETES_VERSIONS`], and the DaemonSet keeps its security properties
//!   ([`check_manifests`]): not privileged, no privilege escalation, read-only root, capabilities
//!   dropped then exactly the list added, host paths only from the README's "Mounts" list and
//!   read-only, hostPID, resources and probes set, the ConfigMap equal to `deploy/config.toml`.
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::{packages, run, step};

/// The highest `systemd-analyze security` exposure the unit may have (0.0 best, 10.0 worst).
pub const MAX_EXPOSURE: f64 = 2.5;

/// Kubernetes versions whose schemas the manifests must pass: the first with
/// `securityContext.appArmorProfile` (the DaemonSet uses it) and the newest that
/// `kubernetes-validate` bundles.
pub const KUBERNETES_VERSIONS: &[&str] = &["1.30.0", "1.37.0"];

/// Where the unit expects the binary; `verify` gets a temporary copy pointing elsewhere.
const UNIT_BINARY: &str = "/usr/local/bin/egress-monitor";
const NAMESPACE: &str = "egress-monitor";
const CONFIG_DIR: &str = "/etc/egress-monitor";
const METRICS_PORT: i64 = 9464;

/// What `deploy/` holds, read once.
pub struct Deploy {
    pub readme: String,
    pub unit: String,
    pub config: String,
    /// Every manifest's documents, with its file name.
    pub manifests: Vec<(String, Vec<Value>)>,
    /// The doctor's capability list, as `monitor/src/probes/caps.rs` spells it.
    pub doctor_caps: Vec<String>,
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn manifest_paths(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dir = root.join("deploy/kubernetes");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        bail!("no manifests in {}", dir.display());
    }
    Ok(paths)
}

impl Deploy {
    pub fn load(root: &Path) -> anyhow::Result<Self> {
        let mut manifests = Vec::new();
        for path in manifest_paths(root)? {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let docs = yaml_documents(&read(&path)?).with_context(|| format!("parsing {name}"))?;
            manifests.push((name, docs));
        }
        Ok(Self {
            readme: read(&root.join("deploy/README.md"))?,
            unit: read(&root.join("deploy/systemd/egress-monitor.service"))?,
            config: read(&root.join("deploy/config.toml"))?,
            manifests,
            doctor_caps: doctor_capabilities(&read(&root.join("monitor/src/probes/caps.rs"))?)?,
        })
    }

    /// Every problem the files have by themselves (no external tool), one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let caps = match marked_list(&self.readme, "capabilities") {
            Ok(caps) => caps,
            Err(e) => return vec![format!("deploy/README.md: {e:#}")],
        };
        let mounts = match marked_list(&self.readme, "mounts") {
            Ok(mounts) => mounts,
            Err(e) => return vec![format!("deploy/README.md: {e:#}")],
        };
        let doc = sorted(&caps);
        if doc != sorted(&self.doctor_caps) {
            problems.push(format!(
                "deploy/README.md lists {doc:?} but the doctor's LINUX_CAPS \
                 (monitor/src/probes/caps.rs) are {:?}: keep them the same",
                sorted(&self.doctor_caps)
            ));
        }
        for (i, line) in self.readme.lines().enumerate() {
            for arg in line.split_whitespace() {
                if let Some(list) = arg.strip_prefix("--cap-add=") {
                    let listed: Vec<String> = list
                        .trim_end_matches('\\')
                        .split(',')
                        .map(normalize_cap)
                        .collect();
                    if sorted(&listed) != doc {
                        problems.push(format!(
                            "deploy/README.md:{}: --cap-add= grants {:?}, not the list {doc:?}",
                            i + 1,
                            sorted(&listed)
                        ));
                    }
                }
            }
        }
        problems.extend(check_unit(&self.unit, &caps));
        problems.extend(check_manifests(
            &self.manifests,
            &caps,
            &mounts,
            &self.config,
        ));
        problems
    }
}

fn sorted(items: &[String]) -> Vec<String> {
    items
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// `CAP_BPF`, `cap_bpf` and `BPF` (Kubernetes' spelling) all name `CAP_BPF`.
fn normalize_cap(name: &str) -> String {
    let upper = name.trim().trim_matches('`').to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// The first cells (backquoted) of the table rows between `<!-- NAME -->` and
/// `<!-- end NAME -->` in the README.
pub fn marked_list(readme: &str, name: &str) -> anyhow::Result<Vec<String>> {
    let begin = format!("<!-- {name} -->");
    let end = format!("<!-- end {name} -->");
    let start = readme
        .find(&begin)
        .with_context(|| format!("no `{begin}` marker"))?;
    let body = &readme[start + begin.len()..];
    let stop = body
        .find(&end)
        .with_context(|| format!("no `{end}` marker"))?;
    let items: Vec<String> = body[..stop]
        .lines()
        .filter_map(|l| l.trim().strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(item, _)| item.to_string()))
        .collect();
    if items.is_empty() {
        bail!("the {name} table between `{begin}` and `{end}` has no rows");
    }
    Ok(items)
}

/// The capability names of `LINUX_CAPS` in `monitor/src/probes/caps.rs`.
pub fn doctor_capabilities(source: &str) -> anyhow::Result<Vec<String>> {
    let start = source
        .find("pub const LINUX_CAPS")
        .context("monitor/src/probes/caps.rs has no `pub const LINUX_CAPS` (the doctor's list)")?;
    let body = &source[start..];
    let body = &body[..body.find("];").unwrap_or(body.len())];
    let caps: Vec<String> = body
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name: \""))
        .filter_map(|l| l.split_once('"').map(|(n, _)| n.to_string()))
        .collect();
    if caps.is_empty() {
        bail!("LINUX_CAPS in monitor/src/probes/caps.rs names no capability");
    }
    Ok(caps)
}

/// The values of `key` in the unit's `[Service]` section as systemd combines them: words of
/// every assignment in order, an empty assignment resetting the list.
fn unit_values(unit: &str, key: &str) -> Option<Vec<String>> {
    let mut section = "";
    let mut values: Option<Vec<String>> = None;
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') && line.ends_with(']') {
            section = line;
        } else if section == "[Service]" && !line.starts_with(['#', ';']) {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == key {
                    let list = values.get_or_insert_with(Vec::new);
                    if v.trim().is_empty() {
                        list.clear();
                    } else {
                        list.extend(v.split_whitespace().map(str::to_string));
                    }
                }
            }
        }
    }
    values
}

/// The systemd unit by itself: the capability list, and the settings the README promises.
pub fn check_unit(unit: &str, caps: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let want = sorted(caps);
    for key in ["AmbientCapabilities", "CapabilityBoundingSet"] {
        let got: Vec<String> = unit_values(unit, key)
            .unwrap_or_default()
            .iter()
            .map(|c| normalize_cap(c))
            .collect();
        if sorted(&got) != want || got.len() != want.len() {
            problems.push(format!(
                "deploy/systemd/egress-monitor.service: {key} is {got:?}, not exactly the \
                 README's list {want:?}"
            ));
        }
    }
    let one = |key: &str| unit_values(unit, key).and_then(|v| v.last().cloned());
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("Restart", "on-failure"),
    ] {
        if one(key).as_deref() != Some(value) {
            problems.push(format!(
                "deploy/systemd/egress-monitor.service: {key}= must be {value}"
            ));
        }
    }
    if one("User").as_deref() == Some("root") || one("User").as_deref() == Some("0") {
        problems.push(
            "deploy/systemd/egress-monitor.service: User=root: the capabilities are enough".into(),
        );
    }
    let exec = unit_values(unit, "ExecStart").unwrap_or_default().join(" ");
    for part in [
        UNIT_BINARY,
        "--config /etc/egress-monitor/config.toml",
        "--output /var/log/egress-monitor/findings.jsonl",
    ] {
        if !exec.contains(part) {
            problems.push(format!(
                "deploy/systemd/egress-monitor.service: ExecStart lacks `{part}`"
            ));
        }
    }
    problems
}

/// The YAML documents of one file as JSON values (empty documents skipped).
pub fn yaml_documents(text: &str) -> anyhow::Result<Vec<Value>> {
    let docs = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    docs.iter()
        .filter(|d| !matches!(d, yaml_rust2::Yaml::Null))
        .map(yaml_to_json)
        .collect()
}

fn yaml_to_json(yaml: &yaml_rust2::Yaml) -> anyhow::Result<Value> {
    use yaml_rust2::Yaml;
    Ok(match yaml {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => serde_json::Number::from_f64(r.parse().context("bad float")?)
            .map(Value::Number)
            .with_context(|| format!("float {r} has no JSON form"))?,
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => {
            Value::Array(items.iter().map(yaml_to_json).collect::<Result<_, _>>()?)
        }
        Yaml::Hash(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => bail!("unsupported mapping key {other:?}"),
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Yaml::Alias(_) => bail!("YAML aliases are not used in manifests"),
        Yaml::BadValue => bail!("a value YAML could not read"),
    })
}

fn is_true(v: &Value) -> bool {
    v.as_bool() == Some(true)
}

/// The manifests by themselves: what the DaemonSet must keep (and the objects around it).
pub fn check_manifests(
    manifests: &[(String, Vec<Value>)],
    caps: &[String],
    mounts: &[String],
    config: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut kinds: Vec<(String, String)> = Vec::new();
    let mut daemonsets = Vec::new();
    for (file, docs) in manifests {
        for doc in docs {
            let kind = doc["kind"].as_str().unwrap_or("").to_string();
            let name = doc["metadata"]["name"].as_str().unwrap_or("").to_string();
            let at = format!("{file}: {kind}/{name}");
            if kind.is_empty() || name.is_empty() || !doc["apiVersion"].is_string() {
                problems.push(format!(
                    "{file}: a document without apiVersion, kind or name"
                ));
                continue;
            }
            if !matches!(kind.as_str(), "Namespace" | "PriorityClass")
                && doc["metadata"]["namespace"] != NAMESPACE
            {
                problems.push(format!("{at}: not in namespace {NAMESPACE}"));
            }
            match kind.as_str() {
                "DaemonSet" => daemonsets.push((at.clone(), doc)),
                "ConfigMap" if doc["data"]["config.toml"].as_str() != Some(config) => {
                    problems.push(format!(
                        "{at}: data.config.toml differs from deploy/config.toml (copy it \
                         there, indented)"
                    ));
                }
                "Service" => {
                    let ports = doc["spec"]["ports"].as_array().cloned().unwrap_or_default();
                    if !ports.iter().any(|p| p["port"] == METRICS_PORT) {
                        problems.push(format!("{at}: no port {METRICS_PORT} (metrics)"));
                    }
                    if doc["metadata"]["annotations"]["prometheus.io/scrape"] != "true" {
                        problems.push(format!("{at}: no prometheus.io/scrape annotation"));
                    }
                }
                _ => {}
            }
            kinds.push((kind, name));
        }
    }
    let defined = |kind: &str, name: &Value| {
        kinds
            .iter()
            .any(|(k, n)| k == kind && name.as_str() == Some(n.as_str()))
    };
    if daemonsets.len() != 1 {
        problems.push(format!(
            "deploy/kubernetes: {} DaemonSets, expected one",
            daemonsets.len()
        ));
    }
    let want_caps = sorted(caps);
    for (at, ds) in daemonsets {
        let pod = &ds["spec"]["template"]["spec"];
        if !is_true(&pod["hostPID"]) {
            problems.push(format!("{at}: hostPID must be true (the node's processes)"));
        }
        for key in ["hostNetwork", "hostIPC"] {
            if is_true(&pod[key]) {
                problems.push(format!("{at}: {key}: true is not needed"));
            }
        }
        if pod["securityContext"]["seccompProfile"]["type"] == "Unconfined" {
            problems.push(format!(
                "{at}: the pod's seccompProfile must not be Unconfined"
            ));
        }
        let priority = &pod["priorityClassName"];
        if !(defined("PriorityClass", priority) || priority == "system-node-critical") {
            problems.push(format!(
                "{at}: priorityClassName {priority} is neither defined here nor \
                 system-node-critical"
            ));
        }
        if !defined("ServiceAccount", &pod["serviceAccountName"]) {
            problems.push(format!("{at}: its serviceAccountName is not defined here"));
        }
        let volumes = pod["volumes"].as_array().cloned().unwrap_or_default();
        let volume = |name: &Value| volumes.iter().find(|v| &v["name"] == name).cloned();
        for v in &volumes {
            if let Some(path) = v["hostPath"]["path"].as_str() {
                if !mounts.iter().any(|m| m == path) {
                    problems.push(format!(
                        "{at}: hostPath {path} is not in deploy/README.md's Mounts list"
                    ));
                }
            }
        }
        let containers: Vec<Value> = ["initContainers", "containers", "ephemeralContainers"]
            .iter()
            .flat_map(|k| pod[*k].as_array().cloned().unwrap_or_default())
            .collect();
        if containers.is_empty() {
            problems.push(format!("{at}: no container"));
        }
        for c in &containers {
            let at = format!("{at} container {}", c["name"]);
            let sc = &c["securityContext"];
            if is_true(&sc["privileged"]) {
                problems.push(format!(
                    "{at}: privileged: true (the capabilities are enough)"
                ));
            }
            if sc["allowPrivilegeEscalation"] != false {
                problems.push(format!("{at}: allowPrivilegeEscalation must be false"));
            }
            if !is_true(&sc["readOnlyRootFilesystem"]) {
                problems.push(format!("{at}: readOnlyRootFilesystem must be true"));
            }
            if sc["runAsUser"] != 0 {
                problems.push(format!(
                    "{at}: runAsUser must be 0 (added capabilities reach uid 0 only)"
                ));
            }
            if sc["seccompProfile"]["type"] == "Unconfined" {
                problems.push(format!("{at}: seccompProfile must not be Unconfined"));
            }
            let drop: Vec<&str> = sc["capabilities"]["drop"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if !drop.contains(&"ALL") {
                problems.push(format!("{at}: capabilities.drop must contain ALL"));
            }
            let add: Vec<String> = sc["capabilities"]["add"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(normalize_cap)
                        .collect()
                })
                .unwrap_or_default();
            if sorted(&add) != want_caps || add.len() != want_caps.len() {
                problems.push(format!(
                    "{at}: capabilities.add is {add:?}, not exactly the README's list \
                     {want_caps:?}"
                ));
            }
            let res = &c["resources"];
            for (kind, key) in [
                ("requests", "cpu"),
                ("requests", "memory"),
                ("limits", "memory"),
            ] {
                if res[kind][key].is_null() {
                    problems.push(format!("{at}: resources.{kind}.{key} is not set"));
                }
            }
            let ports = c["ports"].as_array().cloned().unwrap_or_default();
            let port_of = |p: &Value| -> Option<i64> {
                p.as_i64().or_else(|| {
                    ports
                        .iter()
                        .find(|q| &q["name"] == p)
                        .and_then(|q| q["containerPort"].as_i64())
                })
            };
            if c["name"] == "egress-monitor" {
                for probe in ["livenessProbe", "readinessProbe"] {
                    let get = &c[probe]["httpGet"];
                    if get["path"] != "/healthz" || port_of(&get["port"]) != Some(METRICS_PORT) {
                        problems.push(format!(
                            "{at}: {probe} must be httpGet /healthz on port {METRICS_PORT}"
                        ));
                    }
                }
                let args: Vec<&str> = c["args"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let config_path = format!("{CONFIG_DIR}/config.toml");
                if !args
                    .windows(2)
                    .any(|w| w[0] == "--config" && w[1] == config_path)
                {
                    problems.push(format!("{at}: args lack --config {config_path}"));
                }
                if !args.contains(&"--metrics-addr") {
                    problems.push(format!(
                        "{at}: args lack --metrics-addr (the probes need it)"
                    ));
                }
            }
            for m in c["volumeMounts"].as_array().cloned().unwrap_or_default() {
                let Some(v) = volume(&m["name"]) else {
                    problems.push(format!("{at}: mount {} has no volume", m["name"]));
                    continue;
                };
                let source = &v["hostPath"]["path"];
                if let Some(path) = source.as_str() {
                    if !is_true(&m["readOnly"]) {
                        problems.push(format!("{at}: hostPath {path} is mounted read-write"));
                    }
                    if m["mountPath"] != *source {
                        problems.push(format!(
                            "{at}: hostPath {path} is mounted at {}, not at the same path \
                             (where the agent looks)",
                            m["mountPath"]
                        ));
                    }
                } else if m["mountPath"] == CONFIG_DIR
                    && v["configMap"]["name"].is_string()
                    && !defined("ConfigMap", &v["configMap"]["name"])
                {
                    problems.push(format!("{at}: its ConfigMap is not defined here"));
                }
            }
            let mounted = |path: &str| {
                c["volumeMounts"]
                    .as_array()
                    .is_some_and(|ms| ms.iter().any(|m| m["mountPath"] == path))
            };
            if c["name"] == "egress-monitor" && !mounted(CONFIG_DIR) {
                problems.push(format!("{at}: nothing is mounted at {CONFIG_DIR}"));
            }
        }
    }
    problems
}

/// A command this check runs, with the package that provides it when it is missing.
fn need(command: &str) -> anyhow::Result<()> {
    if packages::on_path(command).is_some() {
        return Ok(());
    }
    let package = packages::TOOLS
        .iter()
        .find(|t| t.name == command)
        .map(|t| t.packages.join(" "))
        .unwrap_or_else(|| "?".into());
    bail!(
        "`{command}` is not installed (package {package}): `cargo xtask setup` as root \
         installs it"
    )
}

/// `systemd-analyze verify` on a copy of the unit whose ExecStart names an executable that
/// exists here (verify checks that it does); any warning fails too. Returns the exposure.
fn systemd_checks(unit: &str) -> anyhow::Result<f64> {
    need("systemd-analyze")?;
    let dir = TempDir::new("systemd")?;
    let stub = dir.0.join("egress-monitor");
    std::fs::write(&stub, "#!/bin/sh\nexit 0\n")?;
    std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let copy = dir.0.join("egress-monitor.service");
    std::fs::write(&copy, unit.replace(UNIT_BINARY, &stub.to_string_lossy()))?;
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .context("starting systemd-analyze")?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() || !said.trim().is_empty() {
        bail!(
            "systemd-analyze verify deploy/systemd/egress-monitor.service ({}):\n{}",
            out.status,
            said.trim()
                .replace(&*dir.0.to_string_lossy(), "deploy/systemd")
        );
    }
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&copy)
        .output()
        .context("starting systemd-analyze security")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let exposure = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for "))
        .and_then(|(_, rest)| rest.split_once(": "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .with_context(|| {
            format!(
                "systemd-analyze security printed no exposure level:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    if exposure > MAX_EXPOSURE {
        bail!(
            "deploy/systemd/egress-monitor.service: `systemd-analyze security` exposure \
             {exposure} is above {MAX_EXPOSURE}:\n{text}"
        );
    }
    Ok(exposure)
}

fn logrotate_check(root: &Path) -> anyhow::Result<()> {
    need("logrotate")?;
    let dir = TempDir::new("logrotate")?;
    let out = Command::new("logrotate")
        .arg("--debug")
        .arg("--state")
        .arg(dir.0.join("state"))
        .arg(root.join("deploy/systemd/egress-monitor.logrotate"))
        .output()
        .context("starting logrotate")?;
    let said = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = said.lines().filter(|l| l.starts_with("error:")).collect();
    if !out.status.success() || !errors.is_empty() {
        bail!(
            "logrotate --debug deploy/systemd/egress-monitor.logrotate ({}):\n{}",
            out.status,
            said.trim()
        );
    }
    Ok(())
}

/// `deploy/.venv` with `deploy/requirements.txt` (kubernetes-validate), installed once.
fn validator(root: &Path) -> anyhow::Result<PathBuf> {
    let requirements = root.join("deploy/requirements.txt");
    let wanted = read(&requirements)?;
    let venv = root.join("deploy/.venv");
    let stamp = venv.join("installed-requirements.txt");
    let bin = venv.join("bin/kubernetes-validate");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) && bin.exists() {
        return Ok(bin);
    }
    step("installing kubernetes-validate (venv + pip): deploy/.venv");
    if !venv.join("bin/python3").exists() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements))?;
    std::fs::write(stamp, wanted)?;
    Ok(bin)
}

fn kubernetes_validate(root: &Path) -> anyhow::Result<()> {
    let bin = validator(root)?;
    let files = manifest_paths(root)?;
    for version in KUBERNETES_VERSIONS {
        let out = Command::new(&bin)
            .args(["--strict", "--quiet", "--kubernetes-version", version])
            .args(&files)
            .current_dir(root)
            .output()
            .context("starting kubernetes-validate")?;
        if !out.status.success() {
            bail!(
                "kubernetes-validate --strict (Kubernetes {version}) rejects deploy/kubernetes \
                 ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

/// Everything: the files' own consistency, then the external validators.
pub fn check(root: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    step("checking deploy/ (systemd unit, logrotate, Kubernetes manifests, capability list)");
    let deploy = Deploy::load(root)?;
    let problems = deploy.problems();
    if !problems.is_empty() {
        bail!("deploy/ is inconsistent:\n  {}", problems.join("\n  "));
    }
    let exposure = systemd_checks(&deploy.unit)?;
    logrotate_check(root)?;
    kubernetes_validate(root)?;
    step(&format!(
        "deploy/ checks passed in {:.1} s: systemd-analyze verify clean, exposure {exposure} \
         (at most {MAX_EXPOSURE}), manifests valid for Kubernetes {}",
        started.elapsed().as_secs_f64(),
        KUBERNETES_VERSIONS.join(" and ")
    ));
    Ok(())
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "egress-monitor-xtask-{what}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy() -> Deploy {
        Deploy::load(&crate::workspace_root()).unwrap()
    }

    /// The DaemonSet document, to change.
    fn daemonset(d: &mut Deploy) -> &mut Value {
        d.manifests
            .iter_mut()
            .flat_map(|(_, docs)| docs.iter_mut())
            .find(|doc| doc["kind"] == "DaemonSet")
            .unwrap()
    }

    fn container(d: &mut Deploy) -> &mut Value {
        &mut daemonset(d)["spec"]["template"]["spec"]["containers"][0]
    }

    fn problems_mentioning(d: &Deploy, what: &str) -> Vec<String> {
        let problems = d.problems();
        assert!(
            problems.iter().any(|p| p.contains(what)),
            "no problem mentions {what:?}: {problems:#?}"
        );
        problems
    }

    #[test]
    fn the_packaging_as_committed_is_consistent() {
        let d = deploy();
        assert_eq!(d.problems(), Vec::<String>::new());
        let caps = marked_list(&d.readme, "capabilities").unwrap();
        assert!(caps.contains(&"CAP_BPF".to_string()), "{caps:?}");
        assert!(caps.iter().all(|c| c.starts_with("CAP_")), "{caps:?}");
    }

    #[test]
    fn a_privileged_daemonset_fails() {
        let mut d = deploy();
        container(&mut d)["securityContext"]["privileged"] = Value::Bool(true);
        problems_mentioning(&d, "privileged: true");
    }

    #[test]
    fn an_extra_or_missing_capability_fails_everywhere() {
        let mut d = deploy();
        container(&mut d)["securityContext"]["capabilities"]["add"]
            .as_array_mut()
            .unwrap()
            .push("SYS_MODULE".into());
        problems_mentioning(&d, "capabilities.add");

        let mut d = deploy();
        container(&mut d)["securityContext"]["capabilities"]["add"]
            .as_array_mut()
            .unwrap()
            .retain(|c| c != "SYS_PTRACE");
        problems_mentioning(&d, "capabilities.add");

        let mut d = deploy();
        d.unit = d.unit.replace(
            "AmbientCapabilities=CAP_BPF",
            "AmbientCapabilities=CAP_SYS_MODULE CAP_BPF",
        );
        problems_mentioning(&d, "AmbientCapabilities");

        // The README's list is the reference: changing it alone breaks every manifest.
        let mut d = deploy();
        d.readme = d
            .readme
            .replacen("| `CAP_SYS_RESOURCE`", "| `CAP_SYSLOG`", 1);
        let problems = problems_mentioning(&d, "CapabilityBoundingSet");
        assert!(
            problems.iter().any(|p| p.contains("LINUX_CAPS")),
            "{problems:#?}"
        );
        assert!(problems.iter().any(|p| p.contains("capabilities.add")));
    }

    #[test]
    fn escalation_drop_all_and_read_only_root_are_required() {
        let mut d = deploy();
        let sc = &mut container(&mut d)["securityContext"];
        sc["allowPrivilegeEscalation"] = Value::Bool(true);
        sc["capabilities"]["drop"] = serde_json::json!(["NET_RAW"]);
        sc.as_object_mut().unwrap().remove("readOnlyRootFilesystem");
        let problems = d.problems();
        for what in [
            "allowPrivilegeEscalation",
            "drop must contain ALL",
            "readOnlyRootFilesystem",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(what)),
                "{what}: {problems:#?}"
            );
        }
    }

    #[test]
    fn host_paths_must_be_listed_and_read_only() {
        let mut d = deploy();
        let pod = &mut daemonset(&mut d)["spec"]["template"]["spec"];
        pod["volumes"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "root", "hostPath": {"path": "/"}}));
        pod["containers"][0]["volumeMounts"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "root", "mountPath": "/", "readOnly": true}));
        problems_mentioning(&d, "hostPath / is not in");

        let mut d = deploy();
        for m in container(&mut d)["volumeMounts"].as_array_mut().unwrap() {
            if m["mountPath"] == "/sys/fs/cgroup" {
                m["readOnly"] = Value::Bool(false);
            }
        }
        problems_mentioning(&d, "hostPath /sys/fs/cgroup is mounted read-write");
    }

    #[test]
    fn host_pid_resources_and_probes_are_required() {
        let mut d = deploy();
        daemonset(&mut d)["spec"]["template"]["spec"]["hostPID"] = Value::Bool(false);
        let c = container(&mut d);
        c["resources"]["limits"]
            .as_object_mut()
            .unwrap()
            .remove("memory");
        c["livenessProbe"]["httpGet"]["port"] = 8080.into();
        let problems = d.problems();
        for what in ["hostPID", "resources.limits.memory", "livenessProbe"] {
            assert!(
                problems.iter().any(|p| p.contains(what)),
                "{what}: {problems:#?}"
            );
        }
    }

    #[test]
    fn the_config_map_must_carry_the_example_config() {
        let mut d = deploy();
        d.config.push_str("\n[tls]\n");
        problems_mentioning(&d, "differs from deploy/config.toml");
    }

    #[test]
    fn the_unit_keeps_its_promises() {
        let mut d = deploy();
        d.unit = d
            .unit
            .replace("NoNewPrivileges=yes", "NoNewPrivileges=no")
            .replace(" --output /var/log/egress-monitor/findings.jsonl", "");
        let problems = d.problems();
        assert!(
            problems.iter().any(|p| p.contains("NoNewPrivileges")),
            "{problems:#?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("--output")),
            "{problems:#?}"
        );
    }

    #[test]
    fn unit_values_follow_systemd_merging() {
        let unit = "[Unit]\nAmbientCapabilities=CAP_X\n[Service]\nAmbientCapabilities=CAP_A\n\
                    # AmbientCapabilities=CAP_C\nAmbientCapabilities=CAP_B CAP_D\n";
        assert_eq!(
            unit_values(unit, "AmbientCapabilities").unwrap(),
            ["CAP_A", "CAP_B", "CAP_D"]
        );
        let reset = format!("{unit}AmbientCapabilities=\nAmbientCapabilities=CAP_E\n");
        assert_eq!(
            unit_values(&reset, "AmbientCapabilities").unwrap(),
            ["CAP_E"]
        );
    }

    #[test]
    fn yaml_scalars_keep_their_types() {
        let docs =
            yaml_documents("a: 1\nb: \"1\"\nc: true\nd: 0.0.0.0:9464\n---\n---\ne: [x]\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["a"], 1);
        assert_eq!(docs[0]["b"], "1");
        assert_eq!(docs[0]["c"], true);
        assert_eq!(docs[0]["d"], "0.0.0.0:9464");
        assert_eq!(docs[1]["e"][0], "x");
    }
}
