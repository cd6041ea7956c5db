//! Correlation: raw kernel events plus what we know of their processes -> the records we report.
//! Pure: no I/O here, so sequences of events are unit-tested and a recording replays through the
//! same code as a live run.
pub mod errno;

use std::{net::IpAddr, sync::Arc, time::SystemTime};

use crate::{
    decode::Connect,
    output::{Destination, Event, EventDetail, Socket},
    process::ProcessInfo,
};

#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Report connects to loopback addresses too (off by default: local IPC is not egress).
    pub include_loopback: bool,
}

#[derive(Debug, Default)]
pub struct Analyzer {
    settings: Settings,
}

/// The address that was really dialled: an IPv4-mapped IPv6 address is the IPv4 peer.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl Analyzer {
    pub fn new(settings: Settings) -> Self {
        Self { settings }
    }

    /// A finished `connect`: the event to report, or `None` when policy ignores it.
    pub fn connect(
        &mut self,
        c: &Connect,
        process: Arc<ProcessInfo>,
        time: SystemTime,
    ) -> Option<Event> {
        let ip = canonical(c.ip);
        if ip.is_loopback() && !self.settings.include_loopback {
            return None;
        }
        Some(Event {
            time,
            process,
            detail: EventDetail::Connect {
                socket: Socket {
                    family: c.family,
                    protocol: c.protocol,
                    fd: c.fd,
                },
                destination: Destination {
                    ip,
                    port: c.port,
                    hostname: None,
                },
                result: errno::connect_result(c.ret),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Comm, Family, Protocol};

    fn connect(ip: &str, ret: i32) -> Connect {
        let ip: IpAddr = ip.parse().unwrap();
        Connect {
            tgid: 1,
            tid: 1,
            ktime_ns: 0,
            fd: 5,
            ret,
            family: if ip.is_ipv4() {
                Family::Ipv4
            } else {
                Family::Ipv6
            },
            protocol: Some(Protocol::Tcp),
            ip,
            port: 80,
            comm: Comm::from("curl"),
        }
    }

    fn run(settings: Settings, c: &Connect) -> Option<Event> {
        Analyzer::new(settings).connect(c, Arc::new(ProcessInfo::default()), SystemTime::UNIX_EPOCH)
    }

    #[test]
    fn loopback_is_ignored_unless_asked_for() {
        for ip in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert!(run(Settings::default(), &connect(ip, 0)).is_none(), "{ip}");
            assert!(
                run(
                    Settings {
                        include_loopback: true
                    },
                    &connect(ip, 0)
                )
                .is_some(),
                "{ip}"
            );
        }
        assert!(run(Settings::default(), &connect("10.203.0.2", 0)).is_some());
    }

    #[test]
    fn v4_mapped_destinations_are_reported_as_ipv4_on_an_ipv6_socket() {
        let e = run(Settings::default(), &connect("::ffff:10.203.0.2", -115)).unwrap();
        let EventDetail::Connect {
            socket,
            destination,
            result,
        } = e.detail
        else {
            panic!()
        };
        assert_eq!(socket.family, Family::Ipv6);
        assert_eq!(destination.ip, "10.203.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(result, "in_progress");
    }

    #[test]
    fn refused_connects_carry_the_errno_name() {
        let e = run(Settings::default(), &connect("10.203.0.2", -111)).unwrap();
        assert!(matches!(
            e.detail,
            EventDetail::Connect {
                result: "ECONNREFUSED",
                ..
            }
        ));
    }
}
