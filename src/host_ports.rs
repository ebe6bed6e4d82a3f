//! Ports on this host: whether one is free, and, when it is not, who holds it — so an error
//! can say "port 16443 is held by python3 (pid 4242)" instead of Docker's "address already in use".

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};

use crate::config::{Cluster, Protocol};

/// Whether `port` on `address` can be bound right now (the binding is released at once).
pub fn is_free(address: &str, port: u16, protocol: Protocol) -> bool {
    match protocol {
        Protocol::Tcp => TcpListener::bind((address, port)).is_ok(),
        Protocol::Udp => UdpSocket::bind((address, port)).is_ok(),
        Protocol::Sctp => sctp_is_free(address, port),
    }
}

/// An SCTP port is its own namespace (a TCP listener on the number says nothing of it): bound
/// with an SCTP socket. A host without SCTP (no kernel module) cannot say; the engine will.
fn sctp_is_free(address: &str, port: u16) -> bool {
    const IPPROTO_SCTP: i32 = 132;
    let Ok(ip) = address.parse::<IpAddr>() else { return true };
    let at = SocketAddr::new(ip, port);
    let Ok(socket) = socket2::Socket::new(socket2::Domain::for_address(at), socket2::Type::STREAM, Some(IPPROTO_SCTP.into())) else {
        return true;
    };
    socket.bind(&at.into()).is_ok()
}

/// The process holding `port` for `protocol` (a TCP listener, a bound UDP socket), as
/// "NAME (pid N)", from /proc: the socket's inode in the kernel's tables, then the process with
/// a descriptor on it. None where /proc does not say (another user's process without privileges
/// to look, SCTP, or no socket at all).
pub fn holder(port: u16, protocol: Protocol) -> Option<String> {
    let inodes = socket_inodes(port, protocol);
    if inodes.is_empty() {
        return None;
    }
    for process in procfs::process::all_processes().ok()?.flatten() {
        let Ok(fds) = process.fd() else { continue };
        let holds = fds.flatten().any(|fd| matches!(fd.target, procfs::process::FDTarget::Socket(inode) if inodes.contains(&inode)));
        if holds {
            let name = process.stat().map(|s| s.comm).unwrap_or_default();
            return Some(format!("{name} (pid {})", process.pid));
        }
    }
    None
}

/// The inodes of the sockets that hold `port`: listening TCP sockets, or bound UDP ones.
fn socket_inodes(port: u16, protocol: Protocol) -> HashSet<u64> {
    match protocol {
        Protocol::Tcp => [procfs::net::tcp(), procfs::net::tcp6()]
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.state == procfs::net::TcpState::Listen && e.local_address.port() == port)
            .map(|e| e.inode)
            .collect(),
        Protocol::Udp => [procfs::net::udp(), procfs::net::udp6()]
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.local_address.port() == port)
            .map(|e| e.inode)
            .collect(),
        Protocol::Sctp => HashSet::new(),
    }
}

/// "port P on A is taken[ by HOLDER]".
pub fn describe_taken(address: &str, port: u16, protocol: Protocol) -> String {
    let what = match protocol {
        Protocol::Tcp => format!("port {port}"),
        other => format!("{} port {port}", other.as_str()),
    };
    match holder(port, protocol) {
        Some(h) if h.starts_with("docker-proxy") => {
            format!("{what} on {address} is taken by {h}: another container publishes it (docker ps --filter publish={port})")
        }
        Some(h) => format!("{what} on {address} is taken by {h}"),
        None => format!("{what} on {address} is taken by another process"),
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
            problems.push(format!("{field}: {}; pick another or free it", describe_taken(&addr, port, proto)));
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
        let described = describe_taken("127.0.0.1", port, Protocol::Tcp);
        assert!(described.contains(&format!("(pid {})", std::process::id())), "{described}");
        assert_eq!(holder(port, Protocol::Udp), None, "a TCP listener holds no UDP port");
        drop(listener);
        assert!(is_free("127.0.0.1", port, Protocol::Tcp));
        assert_eq!(holder(port, Protocol::Tcp), None);
    }

    #[test]
    fn names_the_process_that_holds_a_udp_port() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        assert!(!is_free("127.0.0.1", port, Protocol::Udp));
        let described = describe_taken("127.0.0.1", port, Protocol::Udp);
        assert!(
            described.starts_with(&format!("UDP port {port}")) && described.contains(&format!("(pid {})", std::process::id())),
            "{described}"
        );
    }

    /// A TCP listener on a number does not make the SCTP port of that number taken.
    #[test]
    fn an_sctp_port_is_not_a_tcp_port() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(is_free("127.0.0.1", port, Protocol::Sctp));
    }
}
