//! The bench's load generators, run as child processes of the bench (hidden subcommands of the
//! xtask binary) so that the agent can target them, or not, by pid.
use std::{
    io::BufRead as _,
    net::UdpSocket,
    thread,
    time::{Duration, Instant},
};

/// `cargo xtask bench-load TARGET COUNT [--rate R]`: waits for a line on stdin, then does
/// `count` UDP connects to `target`, paced at `rate` per second when given, and prints
/// `<count> <seconds>`.
pub fn connects(target: &str, count: u64, rate: Option<u64>) -> anyhow::Result<()> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let start = Instant::now();
    const BATCH: u64 = 1000;
    let mut done = 0;
    while done < count {
        for _ in 0..BATCH.min(count - done) {
            socket.connect(target)?;
            done += 1;
        }
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64(done as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                thread::sleep(wait);
            }
        }
    }
    println!("{done} {}", start.elapsed().as_secs_f64());
    Ok(())
}

/// Chunks a `bench-syscalls` loop is timed in.
const CHUNKS: u64 = 20;

/// `cargo xtask bench-syscalls COUNT`: `count` `getppid()` system calls in a tight loop, timed in
/// 20 chunks; prints `<calls> <ns per call>`, the median chunk's. The cheapest system call there
/// is: what is left of it is the cost of the syscall entry and exit paths, which is where an
/// agent that puts every thread on the slow path shows. The median chunk leaves out the chunks
/// a preemption or an interrupt landed in (the machines are shared), which the cost of the slow
/// path, paid on every call, never is.
pub fn syscalls(count: u64) -> anyhow::Result<()> {
    let per_chunk = (count / CHUNKS).max(1);
    // The raw system call (no libc may answer from a cache), in a plain `while` loop: xtask is
    // built without optimisations, and an iterator and a closure would add ~7 % per call there.
    let run = |n: u64| {
        let mut i = 0;
        while i < n {
            // SAFETY: getppid has no arguments and cannot fail.
            unsafe { libc::syscall(libc::SYS_getppid) };
            i += 1;
        }
    };
    run(per_chunk.min(100_000));
    let mut ns = Vec::with_capacity(CHUNKS as usize);
    for _ in 0..CHUNKS {
        let start = Instant::now();
        run(per_chunk);
        ns.push(start.elapsed().as_nanos() as f64 / per_chunk as f64);
    }
    let median = super::report::median(&ns).unwrap_or(0.0);
    println!("{} {median:.3}", per_chunk * CHUNKS);
    Ok(())
}
