//! JSON lines, exactly as DESIGN.md's contract says: `schema`, `type`, `time` first, then the
//! fields of the line's type.
use std::io;

use serde::{ser::SerializeMap, Serialize};

use super::{finding::Finding, Event, EventDetail, Record, Status, Timestamp, SCHEMA};

struct EventLine<'a>(&'a Event);
struct FindingLine<'a>(&'a Finding);
struct StatusLine<'a>(&'a Status);

impl Serialize for EventLine<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("schema", SCHEMA)?;
        m.serialize_entry("type", "event")?;
        m.serialize_entry("time", &Timestamp(e.time))?;
        m.serialize_entry("event", e.detail.name())?;
        m.serialize_entry("process", &*e.process)?;
        match &e.detail {
            EventDetail::Connect {
                socket,
                destination,
                result,
            }
            | EventDetail::ConnectResult {
                socket,
                destination,
                result,
            } => {
                m.serialize_entry("socket", socket)?;
                m.serialize_entry("destination", destination)?;
                m.serialize_entry("result", result)?;
            }
            EventDetail::Target { reason } => m.serialize_entry("reason", reason)?,
            EventDetail::TlsHandshake { destination, tls } => {
                m.serialize_entry("destination", destination)?;
                m.serialize_entry("tls", tls)?;
            }
        }
        m.end()
    }
}

impl Serialize for FindingLine<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let f = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("schema", SCHEMA)?;
        m.serialize_entry("type", "finding")?;
        m.serialize_entry("time", &Timestamp(f.time))?;
        m.serialize_entry("id", f.id.as_str())?;
        m.serialize_entry("severity", &f.id.severity())?;
        m.serialize_entry("title", f.id.title())?;
        m.serialize_entry("process", &*f.process)?;
        m.serialize_entry("destination", &f.destination)?;
        m.serialize_entry("evidence", &f.evidence)?;
        m.serialize_entry("remediation", f.id.remediation())?;
        m.serialize_entry("count", &f.count)?;
        m.end()
    }
}

impl Serialize for StatusLine<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let st = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("schema", SCHEMA)?;
        m.serialize_entry("type", "status")?;
        m.serialize_entry("time", &Timestamp(st.time))?;
        m.serialize_entry("status", &st.status)?;
        if let Some(component) = &st.component {
            m.serialize_entry("component", component)?;
        }
        m.serialize_entry("message", &st.message)?;
        if let Some(totals) = &st.totals {
            m.serialize_entry("totals", totals)?;
        }
        m.end()
    }
}

pub fn write(out: &mut Vec<u8>, record: &Record) -> io::Result<()> {
    match record {
        Record::Event(e) => serde_json::to_writer(out, &EventLine(e)),
        Record::Status(s) => serde_json::to_writer(out, &StatusLine(s)),
        Record::Finding(f) => serde_json::to_writer(out, &FindingLine(f)),
    }
    .map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::SystemTime};

    use serde_json::Value;

    use super::*;
    use crate::{
        decode::{Family, Protocol},
        output::{Destination, Socket, StatusKind, Totals},
        process::ProcessInfo,
    };

    fn line(record: &Record) -> Value {
        let mut out = Vec::new();
        write(&mut out, record).unwrap();
        assert!(!out.contains(&b'\n'), "one record, one line");
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn connect_event_has_the_contract_fields() {
        let process = Arc::new(ProcessInfo {
            pid: 7,
            ppid: Some(1),
            uid: Some(0),
            comm: "node".into(),
            exe: Some("/usr/bin/node".into()),
            cmdline: vec!["node".into(), "mcp.js".into()],
            container_id: None,
            mcp: true,
            ..Default::default()
        });
        let v = line(&Record::Event(Event {
            time: SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_764_140_540_123_456),
            process,
            detail: EventDetail::Connect {
                socket: Socket {
                    family: Family::Ipv6,
                    protocol: Some(Protocol::Tcp),
                    fd: 21,
                },
                destination: Destination {
                    ip: "fd00:203::2".parse().unwrap(),
                    port: 443,
                    hostname: None,
                },
                result: "in_progress",
            },
        }));
        assert_eq!(v["schema"], "egress-monitor/1");
        assert_eq!(v["type"], "event");
        assert_eq!(v["event"], "connect");
        assert_eq!(v["time"], "2025-11-26T07:02:20.123456Z");
        assert_eq!(v["process"]["cmdline"][1], "mcp.js");
        assert_eq!(v["process"]["container_id"], Value::Null);
        assert_eq!(v["process"]["pod"], Value::Null, "outside Kubernetes");
        assert_eq!(v["process"]["mcp"], true);
        assert!(
            v["process"].get("cgroup").is_none(),
            "internal fields stay out of the contract"
        );
        assert_eq!(
            v["socket"],
            serde_json::json!({"family": "ipv6", "protocol": "tcp", "fd": 21})
        );
        assert_eq!(
            v["destination"],
            serde_json::json!({"ip": "fd00:203::2", "port": 443, "hostname": null})
        );
        assert_eq!(v["result"], "in_progress");
    }

    #[test]
    fn status_lines() {
        let mut st = crate::output::Status::new(StatusKind::Shutdown, None, "stopped");
        st.totals = Some(Totals {
            events: 3,
            ..Default::default()
        });
        let v = line(&Record::Status(st));
        assert_eq!(v["type"], "status");
        assert_eq!(v["status"], "shutdown");
        assert_eq!(v["totals"]["events"], 3);
        assert!(v.get("component").is_none());
    }
}
