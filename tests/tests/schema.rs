//! The schemas in docs/schema/ accept the lines the monitor writes and reject broken ones, so
//! the validation every end-to-end test applies can fail. No monitor, no root needed.
use egress_monitor_tests::schema;
use serde_json::{json, Value};

fn process() -> Value {
    json!({
        "pid": 16903, "ppid": 16776, "uid": 0, "comm": "curl", "exe": "/usr/bin/curl",
        "cmdline": ["curl", "-s", "http://10.203.0.2:8080/"], "container_id": null, "pod": null,
        "mcp": false
    })
}

fn connect() -> Value {
    json!({
        "schema": "egress-monitor/1", "type": "event", "time": "2026-11-26T07:21:35.763702Z",
        "event": "connect", "process": process(),
        "socket": {"family": "ipv4", "protocol": "tcp", "fd": 5},
        "destination": {"ip": "10.203.0.2", "port": 8080, "hostname": null},
        "result": "ok"
    })
}

fn credentials_finding() -> Value {
    json!({
        "schema": "egress-monitor/1", "type": "finding", "time": "2026-11-26T08:47:18.612685Z",
        "id": "PLAINTEXT_CREDENTIALS", "severity": "HIGH", "title": "Credentials sent without TLS",
        "process": process(),
        "destination": {"ip": "10.203.0.2", "port": 8080, "hostname": "api.test"},
        "evidence": {
            "credentials": [{"fingerprint": "hmac-sha256:1e7a51c4be44", "kind": "bearer", "length": 24, "location": "header:Authorization"}],
            "postgres": null, "protocol": "http",
            "reason": "bearer in header:Authorization sent over plaintext http",
            "request": {"host": "api.test", "method": "GET", "path": "/v1/tools"}
        },
        "remediation": "Send credentials only over TLS.",
        "count": 1
    })
}

fn shutdown() -> Value {
    json!({
        "schema": "egress-monitor/1", "type": "status", "time": "2026-11-26T13:37:34.617659Z",
        "status": "shutdown", "message": "stopped (SIGTERM)",
        "totals": {
            "events": 4, "findings": 0, "targets": 0, "decode_errors": 0,
            "drops": {"ringbuf_full": 0, "sockets_full": 0},
            "tables": {"connections": 0, "open_descriptors": 132},
            "rss_bytes": 26_214_400
        }
    })
}

fn tls_handshake() -> Value {
    let certificate = json!({
        "subject": "CN=api.test", "issuer": "CN=Test CA", "sans": ["api.test", "10.203.0.2"],
        "not_before": "2026-01-01T00:00:00Z", "not_after": "2027-01-01T00:00:00Z",
        "serial": "1F2E", "spki_sha256": "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        "self_signed": false
    });
    json!({
        "schema": "egress-monitor/1", "type": "event", "time": "2026-11-26T07:21:35.763702Z",
        "event": "tls_handshake", "process": process(),
        "destination": {"ip": "fd00:203::2", "port": 8443, "hostname": "api.test"},
        "tls": {
            "library": "libssl", "library_path": "/usr/lib/x86_64-linux-gnu/libssl.so.3",
            "server_name": "api.test", "sni": "api.test", "protocol_version": null,
            "verify_mode": "none", "hostname_check": {"configured": false},
            "handshake": "completed", "application_data": true,
            "verification": {
                "summary": "not verified (verify mode NONE)", "openssl": "unknown",
                "openssl_code": null, "openssl_error": null, "trusted_here": true,
                "reason": null, "name_matches": true
            },
            "certificate": certificate, "chain_length": 1, "certificate_truncated": false
        }
    })
}

fn verify_disabled() -> Value {
    json!({
        "schema": "egress-monitor/1", "type": "finding", "time": "2026-11-26T07:21:35.763702Z",
        "id": "TLS_VERIFY_DISABLED", "severity": "HIGH",
        "title": "TLS handshake completed with certificate verification turned off",
        "process": process(), "destination": null,
        "evidence": {
            "library": "embedded", "server_name": "api.test", "verify_mode": "none",
            "openssl_verify_result": {"code": 18, "error": "depth_zero_self_signed_cert"},
            "reason": "verify mode NONE", "certificate": null, "application_data": true,
            "process_bypass": "NODE_TLS_REJECT_UNAUTHORIZED=0"
        },
        "remediation": "Turn certificate verification back on.", "count": 3
    })
}

fn assert_valid(line: &Value) {
    let errors = schema::errors(schema::lines(), line);
    assert!(errors.is_empty(), "{line}\n{}", errors.join("\n"));
}

fn assert_invalid(line: &Value, why: &str) {
    let errors = schema::errors(schema::lines(), line);
    assert!(!errors.is_empty(), "{why}: accepted {line}");
}

#[test]
fn real_shapes_validate() {
    for line in [
        connect(),
        credentials_finding(),
        shutdown(),
        tls_handshake(),
        verify_disabled(),
    ] {
        assert_valid(&line);
        schema::check_line(&line.to_string(), &line);
    }
    let mut target = connect();
    let t = target.as_object_mut().unwrap();
    for key in ["socket", "destination", "result"] {
        t.remove(key);
    }
    t.insert("event".into(), json!("target"));
    t.insert("reason".into(), json!("child of targeted pid 9048"));
    assert_valid(&target);

    let mut late = connect();
    late["event"] = json!("connect_result");
    late["result"] = json!("ECONNREFUSED");
    late["socket"]["protocol"] = Value::Null;
    late["destination"]["ip"] = json!("fd00:203::2");
    assert_valid(&late);

    let mut ready = shutdown();
    ready["status"] = json!("ready");
    ready.as_object_mut().unwrap().remove("totals");
    assert_valid(&ready);
    ready["status"] = json!("suppressions");
    ready["component"] = json!("suppress");
    assert_valid(&ready);
    ready["status"] = json!("attached");
    ready["component"] = json!("uprobe:/usr/lib/x86_64-linux-gnu/libssl.so.3");
    assert_valid(&ready);
}

#[test]
fn pod_is_required_and_nullable() {
    let mut line = connect();
    line["process"]["pod"] = Value::Null;
    assert_valid(&line);
    line["process"].as_object_mut().unwrap().remove("pod");
    assert_invalid(
        &line,
        "every process object carries pod (null outside Kubernetes)",
    );
    line["process"]["pod"] = json!({"namespace": "mcp", "name": "github-mcp-0", "uid": "6c8a0f1e-2b3d-4c5e-9f01-23456789abcd", "container": "server"});
    assert_valid(&line);
    // The pod log directory does not know the UID: only the UID is given.
    line["process"]["pod"] = json!({"namespace": null, "name": null, "uid": "6c8a0f1e-2b3d-4c5e-9f01-23456789abcd", "container": null});
    assert_valid(&line);
    line["process"]["pod"]["uid"] = Value::Null;
    assert_invalid(&line, "a pod without its UID");
    line["process"]["pod"]["uid"] = json!("6c8a0f1e-2b3d-4c5e-9f01-23456789abcd");
    line["process"]["pod"]["extra"] = json!(1);
    assert_invalid(&line, "an unknown pod key");
}

#[test]
fn broken_lines_do_not_validate() {
    let mut missing_schema = connect();
    missing_schema.as_object_mut().unwrap().remove("schema");
    assert_invalid(&missing_schema, "no schema");

    let mut other_schema = connect();
    other_schema["schema"] = json!("egress-monitor/2");
    assert_invalid(&other_schema, "another schema");

    let mut wrong_type = connect();
    wrong_type["type"] = json!("alert");
    assert_invalid(&wrong_type, "an unknown type");

    let mut event_as_finding = connect();
    event_as_finding["type"] = json!("finding");
    assert_invalid(&event_as_finding, "an event's fields under type finding");

    let mut extra = connect();
    extra["debug"] = json!(true);
    assert_invalid(&extra, "an extra top-level key");

    let mut pid_string = connect();
    pid_string["process"]["pid"] = json!("16903");
    assert_invalid(&pid_string, "pid as a string");

    let mut local_time = connect();
    local_time["time"] = json!("2026-11-26T08:21:35.763702+01:00");
    assert_invalid(&local_time, "a time that is not UTC");

    let mut not_a_time = connect();
    not_a_time["time"] = json!("2026-13-26T07:21:35.763702Z");
    assert_invalid(&not_a_time, "month 13");

    let mut bad_ip = connect();
    bad_ip["destination"]["ip"] = json!("10.203.0.256");
    assert_invalid(&bad_ip, "not an IP address");

    let mut unknown_kind = connect();
    unknown_kind["event"] = json!("accept");
    assert_invalid(&unknown_kind, "an unknown event kind");

    let mut process_extra = connect();
    process_extra["process"]["cgroup"] = json!("/system.slice");
    assert_invalid(&process_extra, "an internal process field");

    let mut suppressed = shutdown();
    suppressed["totals"]["suppressed"] = json!({"TLS_VERIFY_DISABLED": 2});
    assert_valid(&suppressed);
    suppressed["totals"]["suppressed"] = json!({"TLS_EVERYTHING": 2});
    assert_invalid(
        &suppressed,
        "a suppressed count for an id that does not exist",
    );

    let mut no_totals = shutdown();
    no_totals.as_object_mut().unwrap().remove("totals");
    assert_invalid(&no_totals, "a shutdown line without totals");

    let mut unknown_status = shutdown();
    unknown_status["status"] = json!("metrics");
    assert_invalid(&unknown_status, "a status kind not in the schema yet");

    let mut no_credentials = credentials_finding();
    no_credentials["evidence"]
        .as_object_mut()
        .unwrap()
        .remove("credentials");
    assert_invalid(&no_credentials, "PLAINTEXT_CREDENTIALS without credentials");

    let mut raw_secret = credentials_finding();
    raw_secret["evidence"]["credentials"][0]["value"] = json!("tok-9f8e7d6c5b4a39281706");
    assert_invalid(
        &raw_secret,
        "a credential carrying more than its redacted form",
    );

    let mut bad_fingerprint = credentials_finding();
    bad_fingerprint["evidence"]["credentials"][0]["fingerprint"] = json!("sha1:abc");
    assert_invalid(&bad_fingerprint, "a fingerprint in another form");

    let mut zero_count = credentials_finding();
    zero_count["count"] = json!(0);
    assert_invalid(&zero_count, "count 0");

    let mut wrong_severity = credentials_finding();
    wrong_severity["severity"] = json!("LOW");
    assert_invalid(&wrong_severity, "a severity the id does not have");

    let mut bad_handshake = tls_handshake();
    bad_handshake["tls"]["hostname_check"] = json!({"configured": true});
    assert_invalid(&bad_handshake, "a configured hostname check without names");
}

#[test]
#[should_panic(expected = "does not match")]
fn check_line_panics_naming_the_errors() {
    let mut line = connect();
    line["process"]["pid"] = json!("16903");
    schema::check_line(&line.to_string(), &line);
}

#[test]
fn doctor_schema() {
    let capability = json!({
        "name": "ring buffer", "available": true, "required": true, "detail": "BPF_MAP_TYPE_RINGBUF works",
        "needed_for": "streaming events", "fix": "", "min_kernel": "5.8",
        "min_kernel_for": "BPF_MAP_TYPE_RINGBUF", "kernel_meets_min": true
    });
    let mut doc = json!({
        "schema": "egress-monitor/1", "kernel": "6.18.44-fc-v669", "kernel_version": "6.18.44",
        "ready": true, "capabilities": [capability],
        "mcp_servers": [{"pid": 9048, "comm": "node", "cmdline": ["node", "server.mjs"], "reason": "runs an mcp-server package or binary"}],
        "mcp_candidates": []
    });
    assert!(schema::errors(schema::doctor(), &doc).is_empty());
    schema::check_doctor(&doc);
    doc["capabilities"][0]["min_kernel"] = json!(5.8);
    assert!(!schema::errors(schema::doctor(), &doc).is_empty());
}

/// The pin findings and the internal-CA evidence of TLS_UNTRUSTED_CA (monitor/src/analyze/pins.rs).
#[test]
fn pin_findings_validate() {
    const PIN: &str = "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    const OTHER: &str = "sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let finding = |id: &str, severity: &str, extra: Value| {
        let mut line = verify_disabled();
        line["id"] = json!(id);
        line["severity"] = json!(severity);
        let evidence = line["evidence"].as_object_mut().unwrap();
        evidence.remove("process_bypass");
        evidence.extend(extra.as_object().unwrap().clone());
        line
    };
    let observed = json!([
        {"pin": PIN, "certificate": "leaf", "subject": "CN=api.test"},
        {"pin": OTHER, "certificate": "trust anchor", "subject": "CN=Test CA"}
    ]);
    let mismatch = finding(
        "TLS_PIN_MISMATCH",
        "HIGH",
        json!({
            "reason": "api.test presented no key pinned for it", "pinned_host": "*.test",
            "expected_pins": [OTHER], "observed_pins": observed,
            "chain_compared": "the 1 certificate(s) the server sent, and the trust anchor",
            "handshake": "completed"
        }),
    );
    assert_valid(&mismatch);
    let mut bad = mismatch.clone();
    bad["evidence"]["expected_pins"] = json!(["sha1/abc"]);
    assert_invalid(&bad, "a pin of another shape");
    let mut bad = mismatch.clone();
    bad["severity"] = json!("MEDIUM");
    assert_invalid(&bad, "TLS_PIN_MISMATCH is HIGH");

    let unpinned = finding(
        "TLS_UNPINNED_HIGH_VALUE",
        "MEDIUM",
        json!({
            "reason": "api.stripe.com is high-value", "high_value_because": "built-in: payment provider Stripe",
            "observed_pin": PIN, "observed_pins": observed,
            "snippet": format!("[[pins]]\nhost = \"api.stripe.com\"\nspki = [\n  \"{PIN}\",\n]\n")
        }),
    );
    assert_valid(&unpinned);
    let mut withheld = unpinned.clone();
    withheld["evidence"]["snippet"] = Value::Null;
    withheld["evidence"]["snippet_withheld"] = json!("the certificate did not verify here");
    assert_valid(&withheld);
    withheld["evidence"]
        .as_object_mut()
        .unwrap()
        .remove("snippet");
    assert_invalid(
        &withheld,
        "the snippet is always there (null when withheld)",
    );

    let single = finding(
        "TLS_SINGLE_PIN",
        "INFO",
        json!({"reason": "one key", "pinned_host": "api.test", "expected_pins": [PIN]}),
    );
    assert_valid(&single);
    let mut two = single.clone();
    two["evidence"]["expected_pins"] = json!([PIN, OTHER]);
    assert_invalid(&two, "a single pin is one pin");

    let untrusted = finding(
        "TLS_UNTRUSTED_CA",
        "MEDIUM",
        json!({
            "issuer": {"name": "CN=Corp Root", "private": true, "seen_on": ["a.corp:443"]},
            "fix": {"ca_file": "/etc/ssl/corp-ca.pem"}
        }),
    );
    assert_valid(&untrusted);
    let mut no_fix = untrusted.clone();
    no_fix["evidence"]["fix"] = Value::Null;
    no_fix["evidence"]["issuer"] = Value::Null;
    assert_valid(&no_fix);
    no_fix["evidence"].as_object_mut().unwrap().remove("fix");
    assert_invalid(
        &no_fix,
        "TLS_UNTRUSTED_CA always says whether a CA file fixes it",
    );
}
