//! Addresses on berth's network, decided as data (unit-tested): which subnet a new network
//! takes, and which fixed address each new node gets.
//!
//! Nodes keep the same address for life — kubeadm's certificates, etcd's peer URLs and the
//! kubelet's --node-ip all name it — so a node restarted after its cluster was stopped, or after
//! dockerd restarted, must get it back. Docker gives a container a fixed address only on a
//! network whose subnet was configured by the user, so berth configures one: the lower half is
//! Docker's dynamic pool (for other containers), the upper half is where berth pins nodes.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::config::Cidr;

/// Subnets tried, in order, for a new network: the /16s Docker itself would hand out.
pub fn candidate_subnets() -> impl Iterator<Item = Cidr> {
    (18u8..=31)
        .map(|b| Cidr { addr: Ipv4Addr::new(172, b, 0, 0), prefix: 16 })
        .chain((0u8..=240).step_by(16).map(|c| Cidr { addr: Ipv4Addr::new(192, 168, c, 0), prefix: 20 }))
}

/// The first candidate that overlaps none of `taken`.
pub fn choose_subnet(taken: &[Cidr]) -> Option<Cidr> {
    candidate_subnets().find(|c| taken.iter().all(|t| !t.overlaps(*c)))
}

/// The gateway (first address) of a subnet.
pub fn gateway(subnet: Cidr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.addr) + 1)
}

/// Docker's dynamic pool: the lower half of the subnet.
pub fn dynamic_range(subnet: Cidr) -> Cidr {
    Cidr { addr: subnet.addr, prefix: subnet.prefix + 1 }
}

/// `count` free addresses from the upper half of `subnet`, lowest first, avoiding `used`.
pub fn allocate(subnet: Cidr, used: &BTreeSet<Ipv4Addr>, count: usize) -> Option<Vec<Ipv4Addr>> {
    let size = 1u32 << (32 - subnet.prefix);
    let base = u32::from(subnet.addr);
    let first = base + size / 2 + 1; // skip the upper half's network-like first address
    let last = base + size - 2; // keep the broadcast address free
    let picked: Vec<Ipv4Addr> = (first..=last).map(Ipv4Addr::from).filter(|ip| !used.contains(ip)).take(count).collect();
    (picked.len() == count).then_some(picked)
}

/// Serialises address allocation among berth processes on this host: from choosing free
/// addresses until the containers holding them have started. An OS file lock, so a process
/// that dies releases it. The file is shared by every user (created 0666; a lock needs only
/// read access, so a file another user made serves too), and waiting for it is a polling
/// loop, so an interrupt while waiting ends the wait at once.
pub struct NetworkLock {
    _file: std::fs::File,
}

/// How often a waiting process tries the lock again.
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

impl NetworkLock {
    pub async fn acquire() -> std::io::Result<NetworkLock> {
        Self::acquire_at(&std::env::temp_dir().join("berth-network.lock")).await
    }

    pub async fn acquire_at(path: &std::path::Path) -> std::io::Result<NetworkLock> {
        let file = open_shared(path)?;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(NetworkLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) => tokio::time::sleep(LOCK_RETRY).await,
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
        }
    }
}

/// Opens the lock file for reading, creating it readable and writable by everyone if it does
/// not exist yet (the explicit chmod undoes the umask).
fn open_shared(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::File::open(path) {
        Ok(file) => Ok(file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o666).open(path)?;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666));
            Ok(file)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    #[tokio::test]
    async fn the_lock_is_everyones_and_waiting_for_it_can_be_abandoned() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = NetworkLock::acquire_at(&path).await.unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o666);
        // A second taker waits; giving up on the wait (as an interrupt does) returns at once.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(300), NetworkLock::acquire_at(&path)).await;
        assert!(waiting.is_err(), "the lock is held");
        drop(held);
        // A read-only file (made by another user, say) still serves.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
        let _again = NetworkLock::acquire_at(&path).await.unwrap();
    }

    #[test]
    fn skips_subnets_in_use() {
        assert_eq!(choose_subnet(&[]), Some(cidr("172.18.0.0/16")));
        assert_eq!(choose_subnet(&[cidr("172.17.0.0/16"), cidr("172.18.0.0/16")]), Some(cidr("172.19.0.0/16")));
        let all: Vec<Cidr> = candidate_subnets().collect();
        assert_eq!(choose_subnet(&all), None);
        assert_eq!(choose_subnet(&[cidr("172.16.0.0/12")]), Some(cidr("192.168.0.0/20")));
    }

    #[test]
    fn allocates_from_the_upper_half_around_used_addresses() {
        let s = cidr("172.18.0.0/16");
        assert_eq!(gateway(s), Ipv4Addr::new(172, 18, 0, 1));
        assert_eq!(dynamic_range(s), cidr("172.18.0.0/17"));
        let used: BTreeSet<Ipv4Addr> = [Ipv4Addr::new(172, 18, 128, 2)].into();
        assert_eq!(allocate(s, &used, 2), Some(vec![Ipv4Addr::new(172, 18, 128, 1), Ipv4Addr::new(172, 18, 128, 3)]));
        let small = cidr("192.168.0.0/30");
        assert_eq!(allocate(small, &BTreeSet::new(), 5), None);
    }
}
