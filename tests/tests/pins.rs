//! SPKI pins, high-value hosts and internal CAs end to end: real curl and Python clients against
//! HTTPS servers in the upstream namespace whose certificates cover `*.pins.test`, each name
//! reached through `curl --resolve` (or Python's `server_hostname`) so one server plays every
//! upstream, and a config whose `[[pins]]` and `[tls]` entries differ by name. Every finding has
//! a negative twin in the same run, and `egress-monitor pins` is checked against the pin openssl
//! computes from the server's certificate.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use egress_monitor_tests::{
    monitor_bin, ok, pki::Pair, pki::Pki, python, run_client, serial, sh, Client, Monitor, Upstream,
};
use serde_json::Value;

const PORT: u16 = 9443;
/// A server whose certificate comes from a CA no config names.
const OTHER_CA_PORT: u16 = 9444;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `*.pins.test` (and `*.anchor.pins.test`) server certificate signed by `ca` (`<ca>.pem` and
/// `<ca>.key` in `dir`).
fn leaf(dir: &Path, ca: &str, stem: &str) -> Pair {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{stem}.key"),
            "-out",
            &format!("{stem}.csr"),
            "-subj",
            "/CN=pins.test",
        ],
    );
    std::fs::write(
        dir.join(format!("{stem}.ext")),
        "subjectAltName=DNS:*.pins.test,DNS:*.anchor.pins.test\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{stem}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{stem}.pem"),
            "-extfile",
            &format!("{stem}.ext"),
        ],
    );
    Pair {
        cert: dir.join(format!("{stem}.pem")),
        key: dir.join(format!("{stem}.key")),
    }
}

/// A second CA, with a name of its own.
fn other_ca(dir: &Path) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            "ca2.key",
            "-out",
            "ca2.pem",
            "-subj",
            "/CN=pins test CA 2",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    dir.join("ca2.pem")
}

/// The SPKI pin of a PEM certificate, as openssl computes it (curl's --pinnedpubkey recipe).
fn openssl_pin(cert: &Path) -> String {
    let out = sh(&format!(
        "openssl x509 -in {} -pubkey -noout | openssl pkey -pubin -outform der \
         | openssl dgst -sha256 -binary | openssl base64 -A",
        cert.display()
    ));
    assert!(
        out.status.success(),
        "computing the pin of {}",
        cert.display()
    );
    format!("sha256/{}", String::from_utf8_lossy(&out.stdout).trim())
}

fn curl(up: &Upstream, name: &str, port: u16, extra: &[&str]) -> Client {
    run_client(
        Command::new("curl")
            .args(["-sS", "--max-time", "5", "--resolve"])
            .arg(format!("{name}:{port}:{}", up.v4))
            .args(extra)
            .arg(format!("https://{name}:{port}/")),
    )
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

const PY_VERIFIED: &str = r#"
import socket, ssl, sys
ip, port, name, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
with socket.create_connection((ip, port)) as sock:
    with ctx.wrap_socket(sock, server_hostname=name) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: " + name.encode() + b"\r\nConnection: close\r\n\r\n")
        print(s.recv(100).split(b"\r\n")[0].decode())
"#;

#[test]
fn pins_single_pins_and_high_value_hosts() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    let pki = Pki::create();
    let server = leaf(&pki.dir, "ca", "pins");
    up.https_server(&server, PORT);
    let pin = openssl_pin(&server.cert);
    let ca_pin = openssl_pin(&pki.ca());
    // Real keys that are not the server's.
    let other1 = openssl_pin(&pki.wrong_name().cert);
    let other2 = openssl_pin(&pki.self_signed().cert);
    let config = pki.dir.join("pins.toml");
    std::fs::write(
        &config,
        format!(
            r#"[tls]
ca_files = [{ca:?}]
high_value_hosts = ['^hv(-pinned)?\.pins\.test$']

[[pins]]
host = "mismatch.pins.test"
spki = ["{other1}", "{other2}"]

[[pins]]
host = "match.pins.test"
spki = ["{pin}", "{other1}"]

[[pins]]
host = "single.pins.test"
spki = ["{pin}"]

[[pins]]
host = "*.anchor.pins.test"
spki = ["{ca_pin}", "{other1}"]

[[pins]]
host = "hv-pinned.pins.test"
spki = ["{other1}", "{pin}"]
"#,
            ca = pki.ca()
        ),
    )
    .unwrap();
    let monitor = Monitor::start(&[
        "--config",
        config.to_str().unwrap(),
        "--comm",
        "curl",
        "python3",
    ]);
    let ca = pki.ca();
    let cacert = ["--cacert", ca.to_str().unwrap()];
    let mismatch = curl(&up, "mismatch.pins.test", PORT, &cacert);
    let mismatch_insecure = curl(&up, "mismatch.pins.test", PORT, &["-k"]);
    let mismatch_py = run_client(python(PY_VERIFIED).args([
        up.v4,
        &PORT.to_string(),
        "mismatch.pins.test",
        ca.to_str().unwrap(),
    ]));
    let matched = curl(&up, "match.pins.test", PORT, &cacert);
    let matched_py = run_client(python(PY_VERIFIED).args([
        up.v4,
        &PORT.to_string(),
        "match.pins.test",
        ca.to_str().unwrap(),
    ]));
    let single = curl(&up, "single.pins.test", PORT, &cacert);
    let single_again = curl(&up, "single.pins.test", PORT, &cacert);
    // Pinned to the CA's key, which the server does not send: the anchor satisfies it.
    let anchor = curl(&up, "x.anchor.pins.test", PORT, &cacert);
    let high_value = curl(&up, "hv.pins.test", PORT, &cacert);
    let high_value_pinned = curl(&up, "hv-pinned.pins.test", PORT, &cacert);
    for (c, what) in [
        (&mismatch, "curl mismatch"),
        (&mismatch_insecure, "curl -k mismatch"),
        (&mismatch_py, "python mismatch"),
        (&matched, "curl match"),
        (&matched_py, "python match"),
        (&single, "curl single"),
        (&single_again, "curl single again"),
        (&anchor, "curl anchor-pinned"),
        (&high_value, "curl high-value"),
        (&high_value_pinned, "curl high-value pinned"),
    ] {
        ok(c, what);
    }
    let run = monitor.stop();

    // A pinned host presenting another key: HIGH, whether the client verified or not, and
    // the evidence has both sets (the server sent only its leaf: the anchor completes it).
    for c in [&mismatch, &mismatch_py] {
        assert_eq!(run.ids(c.pid), ["TLS_PIN_MISMATCH"], "{}", run.dump());
    }
    let f = run.finding(mismatch.pid, "TLS_PIN_MISMATCH");
    assert_eq!(f["severity"], "HIGH");
    assert_eq!(f["destination"]["hostname"], "mismatch.pins.test", "{f}");
    assert_eq!(f["destination"]["port"], PORT);
    let e = &f["evidence"];
    assert_eq!(e["pinned_host"], "mismatch.pins.test");
    assert_eq!(
        strings(&e["expected_pins"]),
        [other1.clone(), other2.clone()]
    );
    let observed = e["observed_pins"].as_array().unwrap();
    assert_eq!(observed[0]["pin"], pin.as_str(), "{e}");
    assert_eq!(observed[0]["certificate"], "leaf");
    assert!(
        observed
            .iter()
            .any(|o| o["pin"] == ca_pin.as_str() && o["certificate"] == "trust anchor"),
        "the test CA completes the chain: {e}"
    );
    assert!(
        e["chain_compared"]
            .as_str()
            .unwrap()
            .contains("1 certificate"),
        "{e}"
    );
    let insecure = run.ids(mismatch_insecure.pid);
    assert!(
        insecure.contains(&"TLS_PIN_MISMATCH".to_string()),
        "{insecure:?}"
    );
    assert!(
        insecure.contains(&"TLS_VERIFY_DISABLED".to_string()),
        "{insecure:?}"
    );

    // The right key among two pins: nothing, from either client.
    for c in [&matched, &matched_py, &high_value_pinned, &anchor] {
        assert_eq!(run.ids(c.pid), Vec::<String>::new(), "{}", run.dump());
        assert!(!run.handshakes_of(c.pid).is_empty(), "{}", run.dump());
    }

    // One pin: INFO, once per host and run (the second process to the host gets none).
    let f = run.finding(single.pid, "TLS_SINGLE_PIN");
    assert_eq!(f["severity"], "INFO");
    assert_eq!(f["evidence"]["pinned_host"], "single.pins.test");
    assert_eq!(
        strings(&f["evidence"]["expected_pins"]),
        std::slice::from_ref(&pin)
    );
    assert_eq!(run.ids(single.pid), ["TLS_SINGLE_PIN"]);
    assert_eq!(run.ids(single_again.pid), Vec::<String>::new());
    assert_eq!(run.findings("TLS_SINGLE_PIN").len(), 1, "{}", run.dump());

    // High-value without pins: MEDIUM, with the observed pin and a snippet that --config takes.
    let f = run.finding(high_value.pid, "TLS_UNPINNED_HIGH_VALUE");
    assert_eq!(f["severity"], "MEDIUM");
    let e = &f["evidence"];
    assert_eq!(e["observed_pin"], pin.as_str(), "{e}");
    assert!(
        e["high_value_because"]
            .as_str()
            .unwrap()
            .starts_with("config: "),
        "{e}"
    );
    let snippet = e["snippet"]
        .as_str()
        .unwrap_or_else(|| panic!("no snippet: {e}"));
    assert!(
        snippet.contains("host = \"hv.pins.test\"") && snippet.contains(&pin),
        "{snippet}"
    );
    assert_eq!(run.ids(high_value.pid), ["TLS_UNPINNED_HIGH_VALUE"]);

    // `egress-monitor pins` on the run's JSON lines: a block per cleanly verified upstream,
    // with the key openssl computes, and a reminder of the backup key.
    let lines = pki.dir.join("run.jsonl");
    let text: String = run.lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&lines, text).unwrap();
    let out = Command::new(monitor_bin())
        .arg("pins")
        .arg(&lines)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml_text = String::from_utf8(out.stdout).unwrap();
    let block = toml_text
        .split("[[pins]]")
        .find(|b| b.contains("host = \"match.pins.test\""))
        .unwrap_or_else(|| panic!("no block for match.pins.test:\n{toml_text}"));
    assert!(block.contains(&format!("\"{pin}\"")), "{toml_text}");
    assert!(
        block.contains("backup") || toml_text.contains("next key"),
        "{toml_text}"
    );
    // A high-value host's key is suggested: having no pins says nothing against the key.
    assert!(
        toml_text.contains(&format!("host = \"hv.pins.test\"\nspki = [\n  \"{pin}\"")),
        "{toml_text}"
    );
    assert!(
        !toml_text.contains("host = \"mismatch.pins.test\""),
        "a host with a finding is not suggested:\n{toml_text}"
    );
    // -o writes the same to a private file.
    let written = pki.dir.join("pins-out.toml");
    let out = Command::new(monitor_bin())
        .arg("pins")
        .arg(&lines)
        .arg("-o")
        .arg(&written)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&written).unwrap(), toml_text);
    // And the suggestion is a config the monitor accepts.
    let check = Monitor::start(&["--config", written.to_str().unwrap(), "--pid", "1"]);
    check.stop();
}

#[test]
fn a_bad_pins_config_names_the_entry() {
    let _s = serial();
    let dir = std::env::temp_dir().join(format!("egress-monitor-pins-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("bad.toml");
    for (text, expect) in [
        (
            "[[pins]]\nhost = \"api.test\"\nspki = [\"sha256/short\"]\n",
            "line 3",
        ),
        ("[[pins]]\nhost = \"a.*.test\"\nspki = []\n", "wildcard"),
        ("[tls]\nhigh_value_hosts = ['(']\n", "high_value_hosts"),
    ] {
        std::fs::write(&config, text).unwrap();
        let out = Command::new(monitor_bin())
            .args(["run", "--pid", "1", "--duration", "1", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text} was accepted");
        assert!(stderr.contains(expect), "{text}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn untrusted_internal_ca_names_the_ca_file_that_fixes_it() {
    let _s = serial();
    let up = Upstream::create().unwrap();
    let pki = Pki::create();
    up.https_server(&leaf(&pki.dir, "ca", "internal"), PORT);
    other_ca(&pki.dir);
    up.https_server(&leaf(&pki.dir, "ca2", "other"), OTHER_CA_PORT);
    let config = pki.config(); // [tls] ca_files = [the test CA]
    let monitor = Monitor::start(&["--config", config.to_str().unwrap(), "--comm", "curl"]);
    let ca = pki.ca();
    // A client that has the CA, then two that do not.
    let verified = curl(
        &up,
        "seen.pins.test",
        PORT,
        &["--cacert", ca.to_str().unwrap()],
    );
    ok(&verified, "curl --cacert");
    let internal = curl(&up, "internal.pins.test", PORT, &[]);
    let unknown = curl(&up, "unknown.pins.test", OTHER_CA_PORT, &[]);
    assert!(!internal.output.status.success() && !unknown.output.status.success());
    let run = monitor.stop();

    assert_eq!(
        run.ids(verified.pid),
        Vec::<String>::new(),
        "{}",
        run.dump()
    );
    let f = run.finding(internal.pid, "TLS_UNTRUSTED_CA");
    assert_eq!(f["severity"], "MEDIUM");
    let e = &f["evidence"];
    assert_eq!(e["fix"]["ca_file"], ca.to_str().unwrap(), "{e}");
    assert_eq!(e["issuer"]["name"], "CN=egress-monitor test CA", "{e}");
    assert_eq!(e["issuer"]["private"], true, "{e}");
    assert_eq!(
        strings(&e["issuer"]["seen_on"]),
        [format!("seen.pins.test:{PORT}")],
        "{e}"
    );
    assert_eq!(run.ids(internal.pid), ["TLS_UNTRUSTED_CA"]);

    // Its twin: a CA no config file holds. No fix to offer, and no other upstream uses it.
    let f = run.finding(unknown.pid, "TLS_UNTRUSTED_CA");
    let e = &f["evidence"];
    assert!(e["fix"].is_null(), "{e}");
    assert_eq!(e["issuer"]["name"], "CN=pins test CA 2", "{e}");
    assert_eq!(e["issuer"]["private"], true, "{e}");
    assert_eq!(e["issuer"]["seen_on"], serde_json::json!([]), "{e}");
}
