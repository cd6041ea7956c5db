//! Load generator for the flood tests: `connect-flood IP PORT COUNT [wait]` makes COUNT UDP
//! `connect(2)` calls as fast as it can (no packet is sent), prints COUNT and exits. With
//! `wait` it first reads a line from stdin, so it can be selected by pid before it starts.
use std::net::{IpAddr, UdpSocket};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (ip, port, count, wait) = match args.as_slice() {
        [_, ip, port, count] => (ip, port, count, false),
        [_, ip, port, count, w] if w == "wait" => (ip, port, count, true),
        _ => {
            eprintln!("usage: connect-flood IP PORT COUNT [wait]");
            std::process::exit(2);
        }
    };
    let ip: IpAddr = ip.parse().expect("an IP address");
    let port: u16 = port.parse().expect("a port");
    let count: u64 = count.parse().expect("a count");
    let bind = if ip.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let socket = UdpSocket::bind(bind).expect("binding a UDP socket");
    if wait {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .expect("reading stdin");
    }
    for _ in 0..count {
        socket.connect((ip, port)).expect("UDP connect");
    }
    println!("{count}");
}
