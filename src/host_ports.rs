//! Ports on this host: whether one is free, and, when it is not, who holds it — so an error
//! can say "port 16443 is held by python3 (pid 4242)" instead of Docker's "address already in use".

use std::collections::HashSet;
use std::net::{TcpListener, UdpSocket};

use crate::config::{Cluster, Protocol};

/// Whether `port` on `address` can be bound right now (the binding is released at once).
pub fn is_free(address: &str, port: u16, protocol: Protocol) -> bool {
    match protocol {
        Protocol::Tcp | Protocol::Sctp => TcpListener::bind((address, port)).is_ok(),
        Protocol::Udp => UdpSocket::bind((address, port)).is_ok(),
    }
}

/// The process listening on TCP `port`, as "NAME (pid N)", from /proc: the socket's inode in
/// /proc/net/tcp{,6}, then the process with a descriptor on it. None where /proc does not say
/// (another user's process without privileges to look, or no listener at all).
pub fn holder(port: u16) -> Option<String> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    for proc in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = proc.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(fds) = std::fs::read_dir(proc.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else { continue };
            let link = link.to_string_lossy();
            if inodes.iter().any(|i| link == format!("socket:[{i}]")) {
                let name = std::fs::read_to_string(proc.path().join("comm")).unwrap_or_default();
                return Some(format!("{} (pid {pid})", name.trim()));
            }
        }
    }
    None
}

/// The inodes of sockets listening on `port` in a /proc/net/tcp table.
fn listening_inodes(table: &str, port: u16) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1)?.rsplit(':').next()?;
            let listening = *fields.get(3)? == "0A";
            (listening && u16::from_str_radix(local_port, 16).ok()? == port).then(|| fields.get(9).map(|s| s.to_string()))?
        })
        .collect()
}

/// "port P on A is taken[ by HOLDER]".
pub fn describe_taken(address: &str, port: u16) -> String {
    match holder(port) {
        Some(h) if h.starts_with("docker-proxy") => {
            format!("port {port} on {address} is taken by {h}: another container publishes it (docker ps --filter publish={port})")
        }
        Some(h) => format!("port {port} on {address} is taken by {h}"),
        None => format!("port {port} on {address} is taken by another process"),
    }
}

/// Checks that every fixed host port is free now, by binding it briefly. Not part of
/// `config::validate` because its answer depends on the machine, not the file.
pub fn check(c: &Cluster) -> Vec<String> {
    let mut problems = Vec::new();
    let mut checked = HashSet::new();
    for (addr, port, proto, field) in crate::config::fixed_host_ports(c) {
        if !checked.insert((addr.clone(), port, proto)) {
            continue;
        }
        if !is_free(&addr, port, proto) {
            problems.push(format!("{field}: {}; pick another or free it", describe_taken(&addr, port)));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_in_use_on_the_host_are_caught() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let text = format!("kind: Cluster\napiVersion: berth.dev/v1alpha1\nnetworking:\n  apiServerPort: {port}\n");
        let c = crate::config::parse(&text, "t").unwrap();
        let problems = check(&c);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("is taken by") && problems[0].contains(&format!("pid {}", std::process::id())), "{problems:?}");
        drop(listener);
        assert!(check(&c).is_empty());
    }

    #[test]
    fn names_the_process_that_holds_a_port() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(!is_free("127.0.0.1", port, Protocol::Tcp));
        let described = describe_taken("127.0.0.1", port);
        assert!(described.contains(&format!("(pid {})", std::process::id())), "{described}");
        drop(listener);
        assert!(is_free("127.0.0.1", port, Protocol::Tcp));
        assert_eq!(holder(port), None);
    }

    #[test]
    fn reads_listening_sockets_from_the_proc_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:3F0B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000\n   1: 0100007F:3F0B 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0000\n";
        assert_eq!(listening_inodes(table, 0x3F0B), ["12345"], "only the listener, not the connection");
        assert!(listening_inodes(table, 80).is_empty());
    }
}
