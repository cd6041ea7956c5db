//! The JSON contract, checked: every JSON line a test reads from the monitor must satisfy
//! `docs/schema/egress-monitor-1.schema.json`, and `doctor --format json` must satisfy
//! `docs/schema/doctor-1.schema.json`. The schemas are compiled once per test binary; formats
//! (`date-time`, `ipv4`, `ipv6`) are checked too. Nothing is fetched: the schemas have no
//! external references.
use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        OnceLock,
    },
};

use jsonschema::{Draft, Validator};
use serde_json::Value;

/// The run's JSON lines (`schema` "egress-monitor/1").
pub const LINES: &str = "egress-monitor-1.schema.json";
/// The `doctor --format json` document.
pub const DOCTOR: &str = "doctor-1.schema.json";

/// Where a schema file lives in the workspace.
pub fn path(name: &str) -> PathBuf {
    crate::workspace().join("docs/schema").join(name)
}

fn compile(name: &str) -> Validator {
    let path = path(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let schema: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{} is not a valid JSON Schema: {e}", path.display()))
}

/// The compiled schema of the run's JSON lines.
pub fn lines() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| compile(LINES))
}

/// The compiled schema of `doctor --format json`.
pub fn doctor() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| compile(DOCTOR))
}

/// Every way `value` fails `validator`, one per entry ("/process/pid: ..."); empty when valid.
pub fn errors(validator: &Validator, value: &Value) -> Vec<String> {
    validator
        .iter_errors(value)
        .map(|e| {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() { "/".to_string() } else { at };
            format!("{at}: {e} (schema {})", e.schema_path())
        })
        .collect()
}

static VALIDATED: AtomicU64 = AtomicU64::new(0);

/// Lines this test binary has validated so far.
pub fn validated() -> u64 {
    VALIDATED.load(Ordering::Relaxed)
}

/// Panic, naming the line and every validation error, unless `value` (parsed from `raw`)
/// satisfies the schema of the run's JSON lines.
pub fn check_line(raw: &str, value: &Value) {
    let errors = errors(lines(), value);
    assert!(
        errors.is_empty(),
        "a JSON line does not match docs/schema/{LINES}:\n{raw}\n  {}",
        errors.join("\n  ")
    );
    VALIDATED.fetch_add(1, Ordering::Relaxed);
}

/// Panic, naming every validation error, unless `doc` satisfies the doctor schema.
pub fn check_doctor(doc: &Value) {
    let errors = errors(doctor(), doc);
    assert!(
        errors.is_empty(),
        "doctor --format json does not match docs/schema/{DOCTOR}:\n{doc}\n  {}",
        errors.join("\n  ")
    );
}
