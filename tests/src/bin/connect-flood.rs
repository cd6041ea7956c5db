//! Load generator for the flood tests: `connect-flood IP PORT COUNT` makes COUNT UDP
//! `connect(2)` calls as fast as it can (no packet is sent), prints COUNT and exits.
use std::net::{IpAddr, UdpSocket};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, ip, port, count] = args.as_slice() else {
        eprintln!("usage: connect-flood IP PORT COUNT");
        std::process::exit(2);
    };
    let ip: IpAddr = ip.parse().expect("an IP address");
    let port: u16 = port.parse().expect("a port");
    let count: u64 = count.parse().expect("a count");
    let bind = if ip.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let socket = UdpSocket::bind(bind).expect("binding a UDP socket");
    for _ in 0..count {
        socket.connect((ip, port)).expect("UDP connect");
    }
    println!("{count}");
}
